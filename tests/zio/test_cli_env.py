"""The zio CLI and bad environments: unknown options, no stats page, no
userfaultfd (forced fallback, and a non-root user)."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from bindings import stats
from zio_testlib import built, zio_cli
from harness_run import check_same

SCRIPT = "\n".join([
    "alloc 0 1048576", "alloc 1 1048576", "recv 0 100 700000",
    "cpy 0 100 1 5000 600000", "rd 1 9000 3000", "wr 0 20000 100 7",
    "send 1 5000 600000", "writev 0 0 1048576", "realloc 1 2000000",
    "send 1 0 1048576", "free 0", "alloc 0 65536", "send 0 0 65536",
]) + "\n"


def test_unknown_option_rejected(zio_env):
    p = zio_cli("run", "--bogus", "--", "true", env=zio_env, capture_output=True, text=True)
    assert p.returncode == 2 and "unknown option '--bogus'" in p.stderr
    p = zio_cli("run", "--threshold", "abc", "--", "true", env=zio_env, capture_output=True,
                text=True)
    assert p.returncode == 2 and "not a number" in p.stderr
    p = zio_cli("frobnicate", env=zio_env, capture_output=True, text=True)
    assert p.returncode == 2 and "unknown command" in p.stderr
    p = zio_cli("run", env=zio_env, capture_output=True, text=True)
    assert p.returncode == 2 and "no command" in p.stderr


def test_missing_library_reported(zio_env):
    env = dict(zio_env, ZIO_LIB="/nonexistent/libzio.so")
    p = zio_cli("run", "--", "true", env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "/nonexistent/libzio.so not found" in p.stderr


def test_stats_without_page(zio_env):
    p = zio_cli("stats", "999999999", env=zio_env, capture_output=True, text=True)
    assert p.returncode == 1 and "no zIO stats page for pid 999999999" in p.stderr


def test_run_passes_options_and_exit_code(zio_env):
    p = zio_cli("run", "--threshold", "32768", "--ratio=0.1", "--link-max", "0", "--",
                "sh", "-c", 'echo "$ZIO_THRESHOLD $ZIO_RATIO $ZIO_LINK_MAX $ZIO_MODE"; exit 3',
                env=zio_env, capture_output=True, text=True)
    assert p.returncode == 3 and p.stdout == "32768 0.1 0 elide\n"


def test_stats_of_running_process(zio_env, tmp_path):
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    # cat exits through exit(), so libzio's destructor runs (a program that
    # leaves with _exit() or a signal leaves its page for `zio stats` to prune)
    proc = subprocess.Popen([sys.executable, "-m", "zio.cli", "run", "--", "cat", str(fifo)],
                            env=zio_env, stdout=subprocess.DEVNULL)
    try:
        page = None
        for _ in range(400):   # wait for the shell to start under libzio
            if os.path.exists(stats.page_path("zio", str(proc.pid))):
                page = True
                break
            proc.poll()
            subprocess.run(["sleep", "0.02"])
        assert page, "stats page of the running process not found"
        p = zio_cli("stats", str(proc.pid), env=zio_env, capture_output=True, text=True)
        assert p.returncode == 0
        for name in ("copies_elided", "faults_intermediate", "moves_repointed",
                     "bytes_plain_large", "release_fill_bytes"):
            assert name in p.stdout, name
    finally:
        with open(fifo, "w"):
            pass
        proc.wait(timeout=30)
    assert not os.path.exists(stats.page_path("zio", str(proc.pid)))


def test_profile_reports_would_elide(zio_env, tmp_path, input_file):
    p = zio_cli("profile", "--", built("zio_harness"), str(tmp_path / "out"), input_file,
                env=zio_env, input=SCRIPT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    plain = subprocess.run([built("zio_harness"), str(tmp_path / "out.plain"), input_file],
                           input=SCRIPT, capture_output=True, text=True)
    assert p.stdout == plain.stdout   # profiling never changes what the program sees
    assert (tmp_path / "out").read_bytes() == (tmp_path / "out.plain").read_bytes()
    assert "256K-1M" in p.stderr and "copies zIO would elide: " in p.stderr
    line = next(x for x in p.stderr.splitlines() if "would elide" in x)
    assert "bytes: 0 " not in line


def test_forced_fallback_still_correct(tmp_path, input_file, libzio):
    counters = check_same(SCRIPT, tmp_path, input_file,
                          {"LD_PRELOAD": libzio, "ZIO_FORCE_FALLBACK": "1"})
    assert counters["copies_elided"] == 0 and counters["inputs_recorded"] == 0


@pytest.mark.root  # drops to an unprivileged user with setpriv
def test_unprivileged_user_falls_back(input_file, libzio):
    """vm.unprivileged_userfaultfd=0: a non-root process only gets user-mode
    faults; libzio must notice, say so once, and copy plainly."""
    work = tempfile.mkdtemp(prefix="zio-nobody-")   # pytest's tmp dirs are 0700
    try:
        os.chmod(work, 0o777)
        inp = os.path.join(work, "input.bin")
        out = os.path.join(work, "out.bin")
        shutil.copy(input_file, inp)
        os.chmod(inp, 0o644)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               built("zio_harness"), out, inp]
        plain = subprocess.run(cmd, input=SCRIPT.encode(), capture_output=True, timeout=60)
        assert plain.returncode == 0, (plain.stderr, plain.stdout[-200:], os.listdir(work))
        with open(out, "rb") as f:
            sent = f.read()
        under = subprocess.run(cmd, input=SCRIPT.encode(), capture_output=True, timeout=60,
                               env={"LD_PRELOAD": libzio})
        assert under.returncode == 0, under.stderr
        with open(out, "rb") as f:
            assert under.stdout == plain.stdout and f.read() == sent
        msg = under.stderr.decode()
        assert msg.count("zio: userfaultfd") == 1 and "plain copies" in msg
    finally:
        shutil.rmtree(work)
