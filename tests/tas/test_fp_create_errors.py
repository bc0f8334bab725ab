"""tas_fp_create's error path undoes only what it did.  It used to close fd 0
(twice) when it failed before the cores were set up: every core's eventfd
and epoll fd were still the zeroes of the fresh allocation, and destroy
closed them.  Needs the DPDK EAL (--no-huge, no device, no root)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# In a child: the EAL can be initialised once per process.  fd 0 is made a
# pipe we can recognise; with no DPDK port, create fails at find_port.
CHILD = """
import os, sys
from bindings import _tasfp
ffi, lib = _tasfp.ffi, _tasfp.lib
args = ["fp-errors", "--lcores", "0@0,1@0", "--main-lcore", "0", "--no-telemetry",
        "--no-huge", "--no-shconf", "-m", "64", "--no-pci",
        f"--file-prefix=fp-errors-{os.getpid()}", "--log-level=*:error"]
keep = [ffi.new("char[]", a.encode()) for a in args]
assert lib.rte_eal_init(len(args), ffi.new("char *[]", keep)) >= 0, "EAL init failed"
r, w = os.pipe()
os.dup2(r, 0)
before = os.fstat(0)
c = ffi.new("struct tas_fp_conf *")
c.ncores, c.lcores[0], c.nb_mbufs, c.sp_ring_size = 1, 1, 1024, 1024
c.rx_desc = c.tx_desc = 256
c.mtu = 1500
c.poll_sleep_us, c.poll_sleep_max_us = 50, 1000
h = lib.tas_fp_create(c, ffi.NULL)
print("created" if h != ffi.NULL else "failed:" + ffi.string(lib.tas_fp_error()).decode())
try:
    after = os.fstat(0)
    print("fd0 intact" if (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
          else "fd0 replaced")
except OSError as e:
    print("fd0 closed:", e)
lib.rte_eal_cleanup()
"""


def test_early_create_failure_leaves_fd0_open():
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "failed:no DPDK port found (check the vdev/PCI device in the config)", lines
    assert lines[1] == "fd0 intact", lines
