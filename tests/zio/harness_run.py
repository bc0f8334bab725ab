"""Run the scripted harness plainly and under libzio and compare."""
import os
import subprocess

from bindings import stats
from zio_testlib import built


def run_harness(script, tmp, input_file, env_extra=None):
    harness = built("zio_harness")
    out = os.path.join(tmp, "out.bin")
    stats_copy = os.path.join(tmp, "stats.page")
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run([harness, out, input_file, stats_copy], input=script.encode(),
                          capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    with open(out, "rb") as f:
        sent = f.read()
    counters = stats.read_page(stats_copy) if env_extra else {}
    return proc.stdout, sent, counters


def check_same(script, tmp_path, input_file, env_extra):
    plain = tmp_path / "plain"
    zio = tmp_path / "zio"
    plain.mkdir(exist_ok=True)
    zio.mkdir(exist_ok=True)
    p_out, p_sent, _ = run_harness(script, plain, input_file)
    z_out, z_sent, counters = run_harness(script, zio, input_file, env_extra)
    assert z_out == p_out, "observed bytes differ under libzio"
    assert z_sent == p_sent, "sent bytes differ under libzio"
    return counters
