"""Model check: a seeded random workload through the shim on Strata against a
reference directory on tmpfs must give identical results, errno values,
contents and metadata (see model_worker.py)."""
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from strata_helpers import shim_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_worker.py")


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_random_workload_matches_tmpfs(pool, seed):
    ref = f"/dev/shm/strata-ref-{uuid.uuid4().hex[:8]}"
    os.mkdir(ref)
    try:
        subprocess.run([sys.executable, "-c", f"import os; os.mkdir('/strata/m{seed}')"],
                       env=shim_env(pool), check=True, timeout=60)
        r = subprocess.run([sys.executable, WORKER, str(seed), "3000", f"/strata/m{seed}", ref],
                           env=shim_env(pool), capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(ref, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["mismatches"] == [], json.dumps(out["mismatches"])
    assert out["tree_diff"] == [], out["tree_diff"]
    # the workload really exercised the file system
    assert out["ok_ops"] > 200 and out["entries"] > 2, out
    for kind in ("write", "pwrite", "read", "rename", "unlink", "truncate", "digest", "chmod"):
        assert out["kinds"].get(kind, 0) > 0, (kind, out["kinds"])
