"""Python access to libstrata's C API (include/strata/strata_api.h).

The functions are bound with cffi from the header's CDEF block
(bindings._strata, built by Meson like the TAS modules), so C and Python
share one declaration.  Only functions are bound here, never pool
structures: the on-pool layout is defined once in C (strata_layout.h) and
reported through strata_info().
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_PATH = os.path.join(HERE, "libstrata.so")  # the LD_PRELOAD shim (strata run)


class StrataError(OSError):
    pass


_mod = None


def _load():
    """bindings._strata; importing it loads libstrata.so (it links it)."""
    global _mod
    if _mod is None:
        try:
            from bindings import _strata
        except ImportError as e:
            raise StrataError(f"bindings._strata missing ({e}): run `python deploy/native_build.py`")
        _mod = _strata
    return _mod


def lib():
    """The cffi lib: every function of strata_api.h's CDEF block."""
    return _load().lib


def ffi():
    return _load().ffi


def check(rc, what):
    """Raise StrataError with the C errno when rc < 0."""
    if rc < 0:
        e = ffi().errno
        raise StrataError(e, f"{what}: {os.strerror(e)}")
    return rc


def attach(pool):
    os.environ["STRATA_POOL"] = pool
    check(lib().strata_attach(pool.encode()), f"attach {pool}")


def check_runnable(pool):
    """Raise StrataError with the reason when libstrata could not attach
    `pool` (missing, not a pool, another version, not readable and
    writable): a launcher refuses then, before the program runs, instead of
    starting a program whose /strata paths all fail."""
    pool_ref_area(pool)
    if not os.access(pool, os.R_OK | os.W_OK):
        import errno
        raise StrataError(errno.EACCES, f"{pool}: cannot open it for reading and writing")


def pool_ref_area(pool):
    """(offset, length) of the ref area of the pool file `pool`, read from its
    checked superblock without mounting it (for the TAS daemon, whose payload
    arena it is).  Its first STRATA_REF_TABLE (4096) bytes are the daemon's
    ownership table: Strata never writes them and no reference points there.  Raises StrataError when `pool` is not a
    Strata pool of this layout version, with the reason."""
    off, length, table = (ffi().new("uint64_t *") for _ in range(3))
    err = ffi().new("char[]", 700)
    if lib().strata_pool_ref_area(pool.encode(), off, length, table, err, len(err)) != 0:
        e = ffi().errno
        raise StrataError(e, ffi().string(err).decode() or f"{pool}: {os.strerror(e)}")
    return off[0], length[0]


def _text(buf):
    return ffi().string(buf).decode()


def info():
    buf = ffi().new("char[]", 4096)
    check(lib().strata_info(buf, len(buf)), "info")
    return dict(line.split(" ", 1) for line in _text(buf).splitlines())


def df():
    """Space of the attached pool: {key: int} (see strata_df in strata_api.h)."""
    buf = ffi().new("char[]", 4096)
    check(lib().strata_df(buf, len(buf)), "df")
    return {k: int(v) for k, v in (line.split(" ", 1) for line in _text(buf).splitlines())}


def fsck(pool):
    buf = ffi().new("char[]", 1 << 16)
    n = lib().strata_fsck(pool.encode(), buf, len(buf))
    check(n, f"fsck {pool}")
    return n, _text(buf)


def read_file(path):
    fd = check(lib().strata_open(path.encode(), os.O_RDONLY, 0), f"open {path}")
    chunks = []
    buf = ffi().new("char[]", 1 << 20)
    try:
        while True:
            n = check(lib().strata_read(fd, buf, len(buf)), f"read {path}")
            if n == 0:
                return b"".join(chunks)
            chunks.append(ffi().buffer(buf, n)[:])
    finally:
        lib().strata_close(fd)


def write_file(path, data):
    fd = check(lib().strata_open(path.encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
               f"open {path}")
    try:
        off = 0
        while off < len(data):
            off += check(lib().strata_write(fd, data[off:], len(data) - off), f"write {path}")
    finally:
        lib().strata_close(fd)


def ls(path):
    """[(is_dir, size, name)] of a Strata directory."""
    buf = ffi().new("char[]", 1 << 20)
    check(lib().strata_ls(path.encode(), buf, len(buf)), f"ls {path}")
    out = []
    for line in _text(buf).splitlines():
        kind, size, name = line.split(" ", 2)
        out.append((kind == "d", int(size), name))
    return sorted(out, key=lambda t: t[2])
