"""Linux-side TCP peer for the demo, tests and benchmarks (run in a namespace).

    peer_tcp.py sink PORT                      accept one connection, read to EOF
    peer_tcp.py source HOST PORT NBYTES SEED   connect, send a seeded stream
    peer_tcp.py serve-source PORT NBYTES SEED  accept one, send a seeded stream
Prints one JSON line: {"bytes": N, "sha256": "..."}.
"""
import hashlib
import json
import random
import socket
import sys

CHUNK = 1 << 20


def stream(nbytes, seed):
    rng = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def read_all(conn):
    """Read to end of stream from anything with recv(): (bytes, sha256)."""
    h, total = hashlib.sha256(), 0
    while True:
        d = conn.recv(CHUNK)
        if not d:
            return total, h.hexdigest()
        h.update(d)
        total += len(d)


def send_seeded(conn, nbytes, seed):
    """Send the seeded stream through anything with sendall(): sha256."""
    h = hashlib.sha256()
    for chunk in stream(nbytes, seed):
        conn.sendall(chunk)
        h.update(chunk)
    return h.hexdigest()


def write_all(sock, nbytes, seed):
    digest = send_seeded(sock, nbytes, seed)
    sock.shutdown(socket.SHUT_WR)
    return nbytes, digest


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    print(json.dumps({"listening": port}), flush=True)
    return s.accept()[0]


def main(argv):
    mode = argv[0]
    if mode == "sink":
        total, digest = read_all(listen(int(argv[1])))
    elif mode == "source":
        total, digest = write_all(socket.create_connection((argv[1], int(argv[2]))),
                                  int(argv[3]), int(argv[4]))
    elif mode == "serve-source":
        c = listen(int(argv[1]))
        total, digest = write_all(c, int(argv[2]), int(argv[3]))
        c.recv(1)  # wait for the peer's close so nothing is cut short
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps({"bytes": total, "sha256": digest}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
