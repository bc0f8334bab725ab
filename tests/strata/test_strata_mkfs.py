"""`strata mkfs` with parameters that cannot make a pool: every refusal names
the parameter and the limit it breaks (it used to be a bare EINVAL), and
nothing is left at the pool path."""
import os

import pytest

from strata_helpers import strata_cli

REFUSED = [
    # (arguments, words the message must contain)
    (["--size", "64M"], ["--size 64M is too small", "16 log slots of 8M", "at least 150M"]),
    (["--size", "1M", "--slots", "2", "--log-size", "64K"], ["--size 1M is too small", "2 log slots of 64K"]),
    (["--size", "64M", "--log-size", "1000"], ["--log-size 1000", "multiple of 4096", "at least 64K"]),
    (["--size", "64M", "--slots", "0"], ["--slots 0", "between 1 and 256"]),
    (["--size", "1G", "--slots", "300"], ["--slots 300", "between 1 and 256"]),
    (["--size", "64M", "--inodes", "3"], ["--inodes 3", "at least 16"]),
    (["--size", "1G", "--ref-size", "5000"], ["--ref-size 5000", "multiple of 4096", "at least 8192"]),
    (["--size", "64M", "--slots", "2", "--ref-size", "1G"], ["--ref-size 1G is larger than --size 64M"]),
    (["--size", "64Q"], ["--size '64Q' is not a size"]),
    (["--size", "64M", "--log-size=-8M"], ["--log-size -8M must be positive"]),
]


@pytest.mark.parametrize("args,words", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_bad_mkfs_parameters_name_the_parameter(tmp_path, args, words):
    pool = str(tmp_path / "p.pool")
    r = strata_cli("mkfs", *args, pool=pool, check=False)
    assert r.returncode != 0
    assert r.stderr.startswith("strata mkfs: ") and "Invalid argument" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert not os.path.exists(pool)


def test_the_size_it_names_is_enough(tmp_path):
    pool = str(tmp_path / "p.pool")
    r = strata_cli("mkfs", "--size", "64M", pool=pool, check=False)
    need = r.stderr.split("at least ")[1].split(",")[0]
    assert strata_cli("mkfs", "--size", need, pool=pool).returncode == 0
    smaller = f"{int(need[:-1]) - 1}M"
    r = strata_cli("mkfs", "--size", smaller, pool=pool, check=False)
    assert r.returncode != 0 and f"--size {smaller} is too small" in r.stderr
