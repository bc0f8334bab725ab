"""Real tools on /strata against the same run on tmpfs, in the same test:
find, tar create and extract (also an archive made on the kernel's file
system, and through a pipe), cp -a with symbolic and hard links, modes and
times, cp -r and Python's shutil.copytree checked with diff -r, pipelines,
and the error text of failing commands (tests/strata/tools.sh)."""
import os
import subprocess
import uuid

from strata_helpers import fsck_clean, shim_env

HERE = os.path.dirname(os.path.abspath(__file__))


def run(pool, argv):
    r = subprocess.run(argv, env=shim_env(pool), capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def test_real_tools_match_tmpfs(pool_path, tmp_path):
    # a 64M pool is too small for five copies of the tree: the default-sized one
    subprocess.run(["python3", "-m", "strata.cli", "--pool", pool_path, "mkfs", "--size", "256M"],
                   cwd=os.path.dirname(os.path.dirname(HERE)), check=True, capture_output=True)
    kt = tmp_path / "kt" / "kernel"
    kt.mkdir(parents=True)
    (kt / "k.txt").write_text("made on the kernel fs\n")
    os.symlink("k.txt", kt / "k_link")
    archive = str(tmp_path / "k.tgz")
    subprocess.run(["tar", "-C", str(tmp_path / "kt"), "-czf", archive, "kernel"], check=True)
    script = os.path.join(HERE, "tools.sh")
    name = uuid.uuid4().hex[:6]
    got = run(pool_path, ["bash", "-c", f"mkdir /strata/{name} && bash {script} /strata/{name} {archive}"])
    ref = f"/dev/shm/strata-tools-{name}"
    os.mkdir(ref)
    try:
        want = run(pool_path, ["bash", script, ref, archive])
    finally:
        subprocess.run(["rm", "-rf", ref], check=True)
    assert got == want
    out = want[1]
    for ok in ("diff tar ok", "diff cp -a ok", "diff cp -r ok", "diff shutil ok", "tar pipe ok"):
        assert ok in out
    assert "l 777 1 13 b/numbers.txt a/rel_link" in out and "f 644 2 0  a/zero_hard" in out
    assert "copy/a/rel_link 777 1580702706" in out and "made on the kernel fs" in out
    assert "rmdir: failed to remove 'src': Directory not empty" in out and want[2] == ""
    fsck_clean(pool_path)
