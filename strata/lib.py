"""ctypes access to libstrata.so (the C API in include/strata/strata_api.h).

Only functions are bound here, never pool structures: the on-pool layout is
defined once in C (strata_layout.h) and reported through strata_info().
"""
import ctypes
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_PATH = os.path.join(HERE, "libstrata.so")


class StrataError(OSError):
    pass


def _load():
    if not os.path.exists(LIB_PATH):
        raise StrataError(f"{LIB_PATH} missing: run `python deploy/native_build.py`")
    lib = ctypes.CDLL(LIB_PATH, use_errno=True)
    c = ctypes
    sigs = {
        "strata_mkfs": (c.c_int, [c.c_char_p, c.c_uint64, c.c_uint32, c.c_uint64, c.c_uint32]),
        "strata_mkfs_ref": (c.c_int, [c.c_char_p, c.c_uint64, c.c_uint32, c.c_uint64, c.c_uint32,
                                      c.c_uint64]),
        "strata_mkfs_explain": (c.c_int, [c.c_char_p, c.c_uint64, c.c_uint32, c.c_uint64, c.c_uint32,
                                          c.c_uint64, c.c_char_p, c.c_size_t]),
        "strata_pool_ref_area": (c.c_int, [c.c_char_p, c.POINTER(c.c_uint64), c.POINTER(c.c_uint64),
                                           c.POINTER(c.c_uint64), c.c_char_p, c.c_size_t]),
        "strata_digest_self": (c.c_int64, []),
        "strata_attach": (c.c_int, [c.c_char_p]),
        "strata_detach": (None, []),
        "strata_open": (c.c_int, [c.c_char_p, c.c_int, c.c_uint]),
        "strata_close": (c.c_int, [c.c_int]),
        "strata_read": (c.c_ssize_t, [c.c_int, c.c_void_p, c.c_size_t]),
        "strata_write": (c.c_ssize_t, [c.c_int, c.c_char_p, c.c_size_t]),
        "strata_pwrite": (c.c_ssize_t, [c.c_int, c.c_char_p, c.c_size_t, c.c_int64]),
        "strata_fsync": (c.c_int, [c.c_int]),
        "strata_mkdir": (c.c_int, [c.c_char_p, c.c_uint]),
        "strata_unlink": (c.c_int, [c.c_char_p]),
        "strata_digest": (c.c_int64, []),
        "strata_fsck": (c.c_int, [c.c_char_p, c.c_char_p, c.c_size_t]),
        "strata_info": (c.c_int, [c.c_char_p, c.c_size_t]),
        "strata_df": (c.c_int, [c.c_char_p, c.c_size_t]),
        "strata_ls": (c.c_int, [c.c_char_p, c.c_char_p, c.c_size_t]),
        "strata_write_ref": (c.c_ssize_t, [c.c_int, c.c_uint64, c.c_size_t]),
        "strata_pwrite_ref": (c.c_ssize_t, [c.c_int, c.c_uint64, c.c_size_t, c.c_int64]),
        "strata_ref_area": (c.c_int, [c.POINTER(c.c_void_p), c.POINTER(c.c_uint64),
                                      c.POINTER(c.c_uint64)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


_lib = None


def lib():
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def check(rc, what):
    """Raise StrataError with the C errno when rc < 0."""
    if rc < 0:
        e = ctypes.get_errno()
        raise StrataError(e, f"{what}: {os.strerror(e)}")
    return rc


def attach(pool):
    os.environ["STRATA_POOL"] = pool
    check(lib().strata_attach(pool.encode()), f"attach {pool}")


def pool_ref_area(pool):
    """(offset, length) of the ref area of the pool file `pool`, read from its
    checked superblock without mounting it (for the TAS daemon, whose payload
    arena it is).  Its first STRATA_REF_TABLE (4096) bytes are the daemon's
    ownership table: Strata never writes them and no reference points there.  Raises StrataError when `pool` is not a
    Strata pool of this layout version, with the reason."""
    off, length, table = ctypes.c_uint64(), ctypes.c_uint64(), ctypes.c_uint64()
    err = ctypes.create_string_buffer(700)
    if lib().strata_pool_ref_area(pool.encode(), ctypes.byref(off), ctypes.byref(length),
                                  ctypes.byref(table), err, len(err)) != 0:
        e = ctypes.get_errno()
        raise StrataError(e, err.value.decode() or f"{pool}: {os.strerror(e)}")
    return off.value, length.value


def info():
    buf = ctypes.create_string_buffer(4096)
    check(lib().strata_info(buf, len(buf)), "info")
    return dict(line.split(" ", 1) for line in buf.value.decode().splitlines())


def df():
    """Space of the attached pool: {key: int} (see strata_df in strata_api.h)."""
    buf = ctypes.create_string_buffer(4096)
    check(lib().strata_df(buf, len(buf)), "df")
    return {k: int(v) for k, v in (line.split(" ", 1) for line in buf.value.decode().splitlines())}


def fsck(pool):
    buf = ctypes.create_string_buffer(1 << 16)
    n = lib().strata_fsck(pool.encode(), buf, len(buf))
    check(n, f"fsck {pool}")
    return n, buf.value.decode()


def read_file(path):
    fd = check(lib().strata_open(path.encode(), os.O_RDONLY, 0), f"open {path}")
    chunks = []
    buf = ctypes.create_string_buffer(1 << 20)
    try:
        while True:
            n = check(lib().strata_read(fd, buf, len(buf)), f"read {path}")
            if n == 0:
                return b"".join(chunks)
            chunks.append(buf.raw[:n])
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
    buf = ctypes.create_string_buffer(1 << 20)
    check(lib().strata_ls(path.encode(), buf, len(buf)), f"ls {path}")
    out = []
    for line in buf.value.decode().splitlines():
        kind, size, name = line.split(" ", 2)
        out.append((kind == "d", int(size), name))
    return sorted(out, key=lambda t: t[2])
