"""An idle daemon on net_af_packet (the default device, which has no RX
interrupt to wake a blocked core) does not spin: its fast-path core sleeps
between device polls, in steps that grow while nothing comes, and still
answers the first connection after a quiet spell."""
import os
import sys
import time

from libtas_helpers import counters

HZ = os.sysconf("SC_CLK_TCK")


def fast_path_threads(pid):
    """{tid: (name, user+system clock ticks)} of the daemon's DPDK lcores."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            s = f.read()
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        if name.startswith("rte-worker"):
            out[tid] = (name, int(fields[11]) + int(fields[12]))
    return out


def test_idle_fast_path_sleeps(daemon):
    assert daemon.device == "net_af_packet"
    time.sleep(0.5)                 # past idle_block_us: blocked by now
    before, sleeps0 = fast_path_threads(daemon.proc.pid), counters(daemon)["fp_poll_sleeps"]
    assert before, "no fast-path thread (rte-worker-N) found"
    t0 = time.monotonic()
    time.sleep(2.0)
    after, wall = fast_path_threads(daemon.proc.pid), time.monotonic() - t0
    sleeps = counters(daemon)["fp_poll_sleeps"] - sleeps0
    used = {after[t][0]: (after[t][1] - before[t][1]) / HZ for t in after if t in before}
    print(f"over {wall:.2f} s idle: fast-path CPU seconds {used}, polling steps {sleeps}")
    for name, cpu in used.items():
        assert cpu < 0.5 * wall, f"{name} used {cpu:.2f} s of CPU in {wall:.2f} s idle"
    assert sleeps > 0, "the blocked core counted no polling steps"


def test_first_connection_after_idle_is_answered(daemon):
    """A SYN that arrives while the core sleeps in its longest step is
    answered: the daemon resets a connection to a port nobody listens on."""
    time.sleep(0.5)
    code = ("import socket\n"
            "try:\n"
            "    socket.create_connection(('10.0.0.2', 9), timeout=30)\n"
            "    print('connected')\n"
            "except ConnectionRefusedError:\n"
            "    print('refused')\n")
    r = daemon.ns_run(sys.executable, "-c", code, timeout=60)
    assert r.stdout.strip() == "refused", r.stdout + r.stderr
