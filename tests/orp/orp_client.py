"""Redis SET client for the ORP durability tests (runs in the peer namespace).

    orp_client.py HOST PORT LOG NKEYS SEED [--rewrite-at N]

SETs NKEYS keys with values of 64 KiB to 1 MiB and appends "key sha256" to
LOG after each acknowledged SET (flushed and fsynced, so the log never claims
a value the server did not acknowledge).  Stops at the first error: the
server may be killed under it.
"""
import hashlib
import os
import random
import sys

import redis


def main():
    host, port, log, nkeys, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
        int(sys.argv[5])
    rewrite_at = int(sys.argv[7]) if len(sys.argv) > 7 and sys.argv[6] == "--rewrite-at" else -1
    rng = random.Random(seed)
    r = redis.Redis(host=host, port=port, socket_timeout=120)
    with open(log, "a") as out:
        for i in range(nkeys):
            size = rng.choice([64 << 10, 256 << 10, 512 << 10, 1 << 20]) + rng.randrange(4096)
            value = rng.randbytes(size)
            key = f"k{i}"
            try:
                if i == rewrite_at:
                    r.bgrewriteaof()
                r.set(key, value)
            except (redis.RedisError, OSError) as e:
                print(f"stopped at {key}: {e}", file=sys.stderr)
                return 0
            out.write(f"{key} {hashlib.sha256(value).hexdigest()}\n")
            out.flush()
            os.fsync(out.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
