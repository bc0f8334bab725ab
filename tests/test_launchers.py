"""The launchers start a program as a shell would.  Python ignores SIGPIPE
and SIGXFSZ at start-up and an ignored signal stays ignored across exec, so
a program under kbrun / tas-run / zio run / strata run would otherwise keep
writing into a closed pipe (`... | head`) or past RLIMIT_FSIZE instead of
being stopped, unlike the same command without the launcher."""
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast

SHOW = ["--", "sh", "-c", "grep ^SigIgn: /proc/self/status"]
LAUNCHERS = {
    "kbrun": ["kb.run", "--pool", "{pool}"],
    "tas-run": ["tas.run"],
    "zio run": ["zio.cli", "run"],
    "strata run": ["strata.cli", "--pool", "{pool}", "run"],
}


@pytest.mark.parametrize("name", LAUNCHERS)
def test_program_gets_default_sigpipe_and_sigxfsz(name, tmp_path):
    # strata run and kbrun refuse a pool they cannot attach: a small one in tmp_path
    pool = str(tmp_path / "launcher.pool")
    if name in ("strata run", "kbrun"):
        subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, "mkfs", "--size", "16M",
                        "--slots", "2", "--log-size", "1M", "--inodes", "64"],
                       check=True, capture_output=True, timeout=60)
    launcher = [arg.format(pool=pool) for arg in LAUNCHERS[name]]
    r = subprocess.run([sys.executable, "-m", *launcher, *SHOW],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ignored = int(r.stdout.split()[1], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"{name}: {sig.name} ignored in the program"

