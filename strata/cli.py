"""`strata`: operator CLI for the Strata pool.

  strata [--pool P] mkfs [--size auto] [--prealloc] [--slots 16] [--log-size 8M] [--inodes 4096]
                         [--ref-size SIZE/8]
  strata [--pool P] fsck | stat | df | digest | ls [DIR] | cat FILE | cp SRC DST
  strata [--pool P] run -- CMD ...     (LD_PRELOAD=libstrata.so)
  strata [--pool P] kernfs [--interval S]   (digest service loop)

Strata paths are written under the mount prefix ($STRATA_MOUNT, default
/strata), e.g. `strata cp notes.txt /strata/notes.txt`.
"""
import argparse
import errno
import mmap
import os
import signal
import sys
import time

from strata import api
from kb.execprog import default_signals, exec_program

DEFAULT_POOL = "/dev/shm/strata.pool"


def mount_prefix():
    return os.environ.get("STRATA_MOUNT", "/strata").rstrip("/") or "/"


def pool_path(p):
    """Pool path of a path under the mount prefix, else None (a local path)."""
    pre = mount_prefix()
    if p == pre or p.startswith(pre + "/"):
        return p[len(pre):] or "/"
    return None


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = s.strip().lower()
    if s == "auto":
        return 0  # the pool's file system size, at most 64G (sparse: costs what is written)
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def human(n):
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024


MADV_POPULATE_WRITE = 23  # Linux 5.14; Python's mmap module does not name it


def prealloc(path):
    """Allocate every page of the pool file and have the kernel zero them
    now: tmpfs zeroes a fallocated page only at its first touch, which would
    put that cost on the first write to every block (a DAX device has none).
    Through a mapping asking for huge pages first: on a tmpfs mounted with
    huge=advise (deploy/setup mounts /dev/shm so) the pool gets 2 MiB pages,
    as a DAX device maps NVM, and libstrata maps it so; a fallocate first
    would have allocated 4 KiB pages."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        huge = 0
        with mmap.mmap(fd, size, mmap.MAP_SHARED) as m:
            try:
                m.madvise(mmap.MADV_HUGEPAGE)
                m.madvise(MADV_POPULATE_WRITE)   # contents unchanged
                huge = pmd_mapped_bytes(path)
            except OSError as e:
                if e.errno != errno.EINVAL:      # older kernel: zeroed at first touch
                    raise
        os.posix_fallocate(fd, 0, size)          # (where populating could not)
    finally:
        os.close(fd)
    return huge


def pmd_mapped_bytes(path):
    """Bytes of this process's mappings of path mapped in 2 MiB pages."""
    n, ours = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:   # a mapping's first line
                ours = head[-1] == path
            elif ours and head and head[0] in ("ShmemPmdMapped:", "FilePmdMapped:"):
                n += int(head[1]) << 10
    return n


def backing_free(n):
    # -1: every page of the pool is backed already (preallocated, or a device)
    return "fully backed" if n < 0 else f"backing file system free {human(n)}"


def cmd_mkfs(a):
    def size_of(flag, text):
        try:
            n = parse_size(text)
        except (ValueError, IndexError):
            raise SystemExit(f"strata mkfs: {flag} {text!r} is not a size (a number with K, M, G or T)")
        if n <= 0 and not (flag == "--size" and text.strip().lower() == "auto"):
            raise SystemExit(f"strata mkfs: {flag} {text} must be positive")
        return n
    for flag, n, top in (("--slots", a.slots, 256), ("--inodes", a.inodes, 2 ** 32 - 1)):
        if not 0 < n <= top:
            raise SystemExit(f"strata mkfs: {flag} {n} must be between 1 and {top}")
    ref = size_of("--ref-size", a.ref_size) if a.ref_size else 0
    args = (a.pool.encode(), size_of("--size", a.size), a.slots, size_of("--log-size", a.log_size),
            a.inodes, ref)
    msg = api.ffi().new("char[]", 512)
    if api.lib().strata_mkfs_explain(*args, msg, len(msg)) != 0:
        raise SystemExit(f"strata mkfs: {api.ffi().string(msg).decode()}")
    rc = api.lib().strata_mkfs_ref(*args)
    api.check(rc, f"mkfs {a.pool}")
    pages = ""
    if a.prealloc:  # back every page now: no page allocation on the write path
        huge = prealloc(os.path.realpath(a.pool))
        pages = (" in 2 MiB pages" if huge else
                 " in 4 KiB pages (a tmpfs mounted with huge=advise gives 2 MiB pages: faster digest)")
    off, length = api.pool_ref_area(a.pool)
    api.attach(a.pool)
    d = api.df()
    kind = "preallocated" if a.prealloc else "sparse"
    print(f"made Strata pool {a.pool}: {human(d['pool_bytes'])} {kind}, "
          f"data capacity {human(d['data_capacity_bytes'])} ({d['data_capacity_bytes']} bytes), "
          f"{d['log_slots']} logs of {human(d['log_bytes_per_slot'])}, "
          f"{backing_free(d['backing_free_bytes'])}{pages}; "
          f"ref area {length} bytes at offset {off} (first 4096: TAS ownership table)")
    return 0


def cmd_df(a):
    api.attach(a.pool)
    d = api.df()
    width = max(map(len, d))
    for k, v in d.items():
        shown = human(v) if k.endswith("_bytes") and v >= 0 else str(v)
        print(f"{k:<{width}}  {shown:>10}  {v}")
    return 0


def cmd_fsck(a):
    problems, report = api.fsck(a.pool)
    sys.stdout.write(report)
    print(f"{a.pool}: {'clean' if problems == 0 else f'{problems} problem(s)'}")
    return 0 if problems == 0 else 1


def cmd_stat(a):
    from bindings import stats
    api.attach(a.pool)
    info = api.info()
    width = max(map(len, info))
    print("pool")
    for k, v in info.items():
        print(f"  {k:<{width}}  {v}")
    print(f"  {'real_pmem':<{width}}  {'yes' if info['is_pmem'] == '1' else 'no (emulated)'}")
    print("space")
    for k, v in api.df().items():
        print(f"  {k:<{width}}  {human(v) if k.endswith('_bytes') and v >= 0 else v}")
    total = {}
    for inst in stats.instances("strata"):
        if not os.path.exists(f"/proc/{inst}"):
            continue  # a dead process's page, left until its log is recovered
        try:
            for k, v in stats.read("strata", inst).items():
                total[k] = total.get(k, 0) + v
        except stats.StatsError:
            continue
    print(stats.format_table(total, "counters (live strata processes, this one included)"))
    return 0


def cmd_digest(a):
    api.attach(a.pool)
    n = api.check(api.lib().strata_digest(), "digest")
    print(f"digested {n} entries (live owners with a log were asked to digest)")
    return 0


def need_strata(p):
    sp = pool_path(p)
    if sp is None:
        raise SystemExit(f"{p}: not under the mount prefix {mount_prefix()}")
    return sp


def cmd_ls(a):
    api.attach(a.pool)
    for is_dir, size, name in api.ls(need_strata(a.dir)):
        print(f"{'d' if is_dir else '-'} {size:>12} {name}")
    return 0


def cmd_cat(a):
    api.attach(a.pool)
    sys.stdout.buffer.write(api.read_file(need_strata(a.file)))
    return 0


def cmd_cp(a):
    api.attach(a.pool)
    src, dst = pool_path(a.src), pool_path(a.dst)
    if src is not None:
        data = api.read_file(src)
    else:
        with open(a.src, "rb") as f:
            data = f.read()
    if dst is not None:
        api.write_file(dst, data)
    else:
        with open(a.dst, "wb") as f:
            f.write(data)
    return 0


SHARED_WRITERS_HELP = ("for programs whose processes write the same files at once without "
                       "file locks (PostgreSQL): no write leases, every write published "
                       "before it returns (STRATA_SHARED_WRITERS=1)")


def cmd_run(a):
    argv = a.command[1:] if a.command and a.command[0] == "--" else a.command
    if not argv:
        raise SystemExit("usage: strata run -- CMD ...")
    # A pool libstrata cannot attach is refused here, before the program
    # runs: it used to run anyway, each process said "cannot map" and then
    # went on with /strata paths failing and relative paths, after a failed
    # `cd /strata/...`, in the directory it started from (a kernel /strata
    # directory, a mount point say, would have taken the writes).
    api.check_runnable(a.pool)  # StrataError with the reason: missing, not a pool, another version
    env = dict(os.environ, STRATA_POOL=a.pool)
    if a.shared_writers:
        env["STRATA_SHARED_WRITERS"] = "1"
    # libstrata goes last: libzio and libtas come first when present (architecture)
    pre = env.get("LD_PRELOAD")
    env["LD_PRELOAD"] = (pre + ":" if pre else "") + api.LIB_PATH
    try:
        exec_program(argv, env)
    except OSError as e:
        raise SystemExit(f"strata: cannot run {argv[0]}: {e.strerror}") from None


def cmd_kernfs(a):
    """Digest service: periodically digest dead processes' logs and ask live
    owners to digest theirs (they do at their next write)."""
    api.attach(a.pool)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(f"strata kernfs: digesting {a.pool} every {a.interval}s", flush=True)
    try:
        while not stop:
            n = api.lib().strata_digest()
            if n > 0:
                print(f"digested {n} entries", flush=True)
            time.sleep(a.interval)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv=None):
    default_signals()     # `strata ls | head` ends quietly
    p = argparse.ArgumentParser(prog="strata", description=__doc__.splitlines()[0])
    p.add_argument("--pool", default=os.environ.get("STRATA_POOL", DEFAULT_POOL))
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mkfs", help="create a pool")
    m.add_argument("--size", default="auto",
                   help="pool size; auto: its file system's size, at most 64G (sparse)")
    m.add_argument("--prealloc", action="store_true",
                   help="back the whole pool now (not sparse): no page allocation while writing")
    m.add_argument("--slots", type=int, default=16)
    m.add_argument("--log-size", default="8M")
    m.add_argument("--inodes", type=int, default=4096)
    m.add_argument("--ref-size", default=None,
                   help="ref area (TAS payload arena with buffers.backing = nvm); default size/8")
    sub.add_parser("fsck", help="recover and check; exit 1 on inconsistency")
    sub.add_parser("stat", help="pool info, space and counters")
    sub.add_parser("df", help="data capacity, free space, log usage")
    sub.add_parser("digest", help="digest logs now")
    sub.add_parser("ls").add_argument("dir", nargs="?", default=mount_prefix())
    sub.add_parser("cat").add_argument("file")
    cp = sub.add_parser("cp", help="copy a file in or out")
    cp.add_argument("src")
    cp.add_argument("dst")
    r = sub.add_parser("run", help="run a program with the shim")
    r.add_argument("--shared-writers", action="store_true", help=SHARED_WRITERS_HELP)
    r.add_argument("command", nargs=argparse.REMAINDER)
    k = sub.add_parser("kernfs", help="digest service loop")
    k.add_argument("--interval", type=float, default=1.0)
    a = p.parse_args(argv)
    try:
        return globals()["cmd_" + a.cmd](a)
    except api.StrataError as e:
        print(f"strata: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
