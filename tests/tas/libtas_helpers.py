"""Running programs under tas-run and in the peer namespace (libtas tests)."""
import os
import subprocess
import sys

from bindings import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def counters(d):
    return stats.read("tas", d.instance)


def tas_run(procs, d, *cmd, stderr=subprocess.PIPE):
    """Start cmd under tas-run against daemon d."""
    p = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                          *cmd], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=stderr)
    procs.append(p)
    return p


def in_peer(procs, d, *cmd):
    p = subprocess.Popen(["ip", "netns", "exec", d.netns, *cmd], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def finish(p, what):
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, f"{what} failed ({p.returncode}): {out}{err}"
    assert "libtas:" not in out + (err or ""), f"{what} fell back to kernel sockets: {err}"
    return out
