"""Multithreaded copies and the explicit API used by IO stacks."""
import subprocess

import pytest

from bindings import stats
from zio_testlib import built


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_threads_copy_touch_no_mismatch(seed, tmp_path, libzio):
    harness = built("zio_mt_harness")
    plain = subprocess.run([harness, str(tmp_path / "f"), "4", "30", str(seed)],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and plain.stdout == "ok\n", plain.stderr
    page = tmp_path / "stats.page"
    # ratio 100: the harness reads every byte, which would otherwise (rightly)
    # switch elision off after the first copies; here we want faults
    zio = subprocess.run([harness, str(tmp_path / "f"), "4", "30", str(seed), str(page)],
                         capture_output=True, text=True, timeout=120,
                         env={"LD_PRELOAD": libzio, "ZIO_RATIO": "100"})
    assert zio.returncode == 0 and zio.stdout == "ok\n", zio.stderr
    c = stats.read_page(str(page))
    assert c["copies_elided"] > 0
    assert c["faults_intermediate"] > 0 and c["faults_original_write"] > 0
    assert c["uffd_errors"] == 0


def test_threads_policy_turns_elision_off(tmp_path, libzio):
    """Reading every byte of every copy is mis-speculation: the 6 % policy
    must stop eliding for that input site."""
    page = tmp_path / "stats.page"
    zio = subprocess.run([built("zio_mt_harness"), str(tmp_path / "f"), "2", "30", "9", str(page)],
                         capture_output=True, text=True, timeout=120,
                         env={"LD_PRELOAD": libzio})
    assert zio.returncode == 0, zio.stderr
    c = stats.read_page(str(page))
    assert c["policy_sites_disabled"] > 0 and c["policy_fallbacks"] + c["copies_plain"] > 0
    assert c["copies_elided"] < c["copies_seen"] / 2


def test_send_of_copy_while_original_is_overwritten(tmp_path, libzio):
    """One thread sends an elided copy through a slow socket while another
    overwrites the original: the receiver must get the copied bytes."""
    harness = built("zio_race_harness")
    page = tmp_path / "stats.page"
    run = subprocess.run([harness, str(tmp_path / "f"), "4", str(page)], capture_output=True,
                         text=True, timeout=120, env={"LD_PRELOAD": libzio, "ZIO_RATIO": "100"})
    assert run.returncode == 0 and run.stdout == "ok\n", run.stdout + run.stderr
    c = stats.read_page(str(page))
    assert c["copies_elided"] >= 4 and c["outputs_resolved"] >= 4
    assert c["faults_original_write"] > 0


@pytest.mark.fast  # zIO's interval table through the explicit API
def test_api_register_resolve_release(libzio):
    harness = built("zio_api_harness")
    alone = subprocess.run([harness], capture_output=True, text=True, timeout=30)
    assert alone.stdout == "plain\nok\n", alone.stdout
    under = subprocess.run([harness], capture_output=True, text=True, timeout=30,
                           env={"LD_PRELOAD": libzio})
    assert under.stdout == "zio\nok\n", under.stdout + under.stderr
