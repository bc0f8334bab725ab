"""C API behaviour: contract 3 (log entries that reference a pool extent),
leases between processes, ENOSPC on a full pool."""
import errno
import json
import mmap
import subprocess
import sys

from strata_helpers import API_WORKER, api, fsck_clean



PAYLOAD = bytes((i * 7) & 0xFF for i in range(4096))


def test_write_ref_is_read_digested_and_recovered(pool):
    out = api(pool, "ref")
    assert out["head"] == 4 and out["ref"] == 4096 and out["tail"] == 4
    assert out["bad_ref"] == -1 and out["bad_errno"] == errno.EINVAL
    assert out["table_ref"] == -1 and out["table_errno"] == errno.EINVAL
    assert out["neg_ref"] == -1 and out["neg_errno"] == errno.EINVAL
    assert out["own_view"], "the writer reads its own reference through the overlay"
    data = bytes.fromhex(api(pool, "read", "/ref.bin")["hex"])
    assert data == b"head" + PAYLOAD + b"tail"  # digested on close
    # crash with the reference undigested: recovery copies it from the pool
    api(pool, "ref", "crash")
    assert bytes.fromhex(api(pool, "read", "/ref.bin")["hex"]) == b"head" + PAYLOAD + b"tail"
    fsck_clean(pool)


def test_ref_with_bad_checksum_is_torn(pool):
    ref_off = api(pool, "ref", "crash")["ref_off"]  # committed head, ref, tail; then died
    with open(pool, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[ref_off + 100] ^= 0xFF  # the referenced extent changed after logging
    # recovery stops at the reference: head survives, ref and tail are torn
    assert bytes.fromhex(api(pool, "read", "/ref.bin")["hex"]) == b"head"
    fsck_clean(pool)


def test_conflicting_writer_gets_ebusy_then_succeeds(pool):
    holder = subprocess.Popen([sys.executable, API_WORKER, pool, "hold", "/leased"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert json.loads(holder.stdout.readline())["fd"] >= 0
    out = api(pool, "open_w", "/leased", "50")
    assert out["fd"] == -1 and out["errno"] == errno.EBUSY
    holder.stdin.close()
    holder.wait()
    holder.stdout.close()
    assert api(pool, "open_w", "/leased", "50")["fd"] >= 0


def test_full_pool_gives_enospc_not_corruption(pool):
    fill = api(pool, "fill")
    assert fill["errno"] == errno.ENOSPC and fill["written"] > 30 << 20
    fsck_clean(pool)
    after = api(pool, "unlink_fill")  # space comes back once files are removed
    assert after["unlinked"] == fill["files"] and after["write_after"] == 4096
    fsck_clean(pool)


def test_digest_request_is_served_by_live_owner(pool):
    from strata_helpers import strata_cli
    w = subprocess.Popen([sys.executable, API_WORKER, pool, "write_wait"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(w.stdout.readline())["first"]
        # undigested, but a reader applies the live owner's log first (foreign.c)
        assert strata_cli("cat", "/strata/req", pool=pool).stdout == "a"
        strata_cli("digest", pool=pool)  # asks the live owner
        w.stdin.write("go\n")
        w.stdin.flush()
        counters = json.loads(w.stdout.readline())
        assert counters["digests"] >= 1 and counters["digested_entries"] == 2
        assert strata_cli("cat", "/strata/req", pool=pool).stdout == "ab"  # writer still alive
    finally:
        w.stdin.close()
        w.wait()
        w.stdout.close()
    fsck_clean(pool)


def test_writes_into_a_hole_get_enospc_at_write_time(pool):
    out = api(pool, "hole_fill")
    assert out["errno"] == errno.ENOSPC and 30 << 20 < out["written"] < 64 << 20, out
    assert out["digest"] >= 0  # everything logged could be digested
    fsck_clean(pool)
