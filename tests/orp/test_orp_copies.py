"""What ORP saves, from the counters: redis-server (AOF always) on the
whole stack takes single-key SETs of 256 KiB from a kernel client (and,
with ORP, from 16 concurrent clients).

Large copies of a value on the request path are counted where they happen:
copies zIO had to do plainly (bytes_plain_large), intermediates it filled
(release_fill_bytes), and log entries Strata wrote inline in pieces of 16
KiB or more (inline_large_bytes).  Copies zIO links instead of eliding
(below ZIO_LINK_MAX: copies_linked) are memory copies
by choice, cheaper here than eliding; their bytes still reach the log as a
reference, and that is what is counted.  Under ORP the value goes from the
receive ring to the log as a reference: together they stay below a quarter
of a value per SET (fringes and a run's tail are small entries).  Without
ORP every value is copied into the log (at least one large copy per SET);
without zIO too, libtas copies every value out of its ring as well."""
import functools
import subprocess
import sys

import pytest

from bindings import stats
import orp_stack as st

SIZE = 256 * 1024
SETS = 40
CLIENT = """
import os, sys, redis
r = redis.Redis(host='10.0.0.2', port=int(sys.argv[1]), socket_timeout=120)
for i in range(int(sys.argv[2])):
    r.set('k', os.urandom(int(sys.argv[3])))
assert r.strlen('k') == int(sys.argv[3])
"""


def run_sets(make_daemon, procs, pool, mode, clients=1):
    """SETS single-key SETs against redis on the stack; its counters."""
    d = st.start_daemon(make_daemon, pool, mode == "orp", rx_buf='"2M"')
    cmd = [sys.executable, "-m", "kb.run", "-i", d.instance]
    cmd += {"orp": ["--orp"], "shm": ["--pool", pool], "nozio": ["--no-zio", "--pool", pool]}[mode]
    port = st.free_port()
    srv = subprocess.Popen([*cmd, "--", *st.redis_args(port)], cwd=st.ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    procs.append(srv)
    for line in srv.stdout:
        if "Ready to accept connections" in line:
            break
    else:
        raise AssertionError("redis-server did not start")
    if clients == 1:
        run = [sys.executable, "-c", CLIENT, str(port), str(SETS), str(SIZE)]
    else:   # concurrent clients: Redis's AOF buffer gathers many values per flush
        run = ["redis-benchmark", "-h", "10.0.0.2", "-p", str(port), "-c", str(clients),
               "-n", str(SETS * 4), "-d", str(SIZE), "-t", "set", "-q"]
    cli = subprocess.run(["ip", "netns", "exec", d.netns, *run], capture_output=True, text=True,
                         timeout=600)
    assert cli.returncode == 0, cli.stderr
    out = {c: stats.read(c, str(srv.pid)) for c in ("libtas", "strata")}
    out["zio"] = stats.read("zio", str(srv.pid)) if mode != "nozio" else {}
    st.kill(srv)
    return out


def per_value(n, clients=1):
    return n / (SETS * (1 if clients == 1 else 4) * SIZE)


@pytest.mark.parametrize("mode,clients", [("orp", 1), ("orp", 16), ("shm", 1), ("nozio", 1)],
                         ids=["orp", "orp-16-clients", "shm", "nozio"])
def test_large_copies_per_set(make_daemon, procs, orp_pool, mode, clients):
    c = run_sets(make_daemon, procs, orp_pool, mode, clients)
    z, s, lt = c["zio"], c["strata"], c["libtas"]
    print(mode, z, s, lt)
    per_set = functools.partial(per_value, clients=clients)
    zio_copies = per_set(z.get("bytes_plain_large", 0) + z.get("release_fill_bytes", 0))
    log_copies = per_set(s["inline_large_bytes"])
    if mode == "orp":
        assert zio_copies + log_copies < 0.25
        assert per_set(s["ref_bytes"]) > 0.75 and s["ref_fallbacks"] == 0
        assert z["outputs_resolved"] >= 1
        # nothing reads a value through its intermediate pages: not Redis, and
        # not zIO's own copy of an AOF buffer holding more values than one
        # round of a copy elides (those faults switched the receive site off)
        assert per_set(z["faults_intermediate"] * 4096) < 0.05 and z["policy_sites_disabled"] == 0
        # a ring half held by references had Strata digest in the background
        assert lt["rx_digest_kicks"] >= 1
    else:
        assert s["ref_bytes"] == 0 and log_copies >= 0.9
    if mode == "nozio":
        # libtas's own copy out of the ring (no zIO to elide it) and the log copy
        assert per_set(lt["rx_bytes"]) >= 1 and lt["rx_registered_bytes"] == 0
        assert per_set(lt["rx_bytes"]) + log_copies >= 1.95
