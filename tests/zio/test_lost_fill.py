"""A fill libzio cannot do must never leave zeros silently: memory unmapped
behind libzio's back is skipped (nothing can read it; counted in
uffd_errors), memory mapped over an intermediate behind its back stops the
program with a message naming the page."""
import os
import subprocess

from bindings import stats
from zio_testlib import built


def run(mode, tmp_path, input_file, libzio):
    page = tmp_path / "stats.page"
    env = dict(os.environ, LD_PRELOAD=libzio)
    p = subprocess.run([built("zio_lost_fill_harness"), input_file, mode, str(page)],
                       capture_output=True, text=True, env=env, timeout=60)
    return p, page


def test_unmapped_intermediate_is_skipped(tmp_path, input_file, libzio):
    p, page = run("unmap", tmp_path, input_file, libzio)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith("survived\n")
    c = stats.read_page(str(page))
    assert c["copies_elided"] == 1 and c["uffd_errors"] > 0


def test_intermediate_mapped_over_aborts_naming_the_page(tmp_path, input_file, libzio):
    p, _ = run("remap", tmp_path, input_file, libzio)
    assert p.returncode == -6, (p.returncode, p.stdout, p.stderr)   # SIGABRT
    assert "survived" not in p.stdout
    addr = int(p.stdout.split()[1], 16)   # "intermediate 0x..."
    msg = [line for line in p.stderr.splitlines() if "cannot fill intermediate page" in line]
    assert msg, p.stderr
    page = int(msg[0].split("cannot fill intermediate page ")[1].split()[0], 16)
    assert addr <= page < addr + 256 * 1024
