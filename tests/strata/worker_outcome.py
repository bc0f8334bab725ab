"""The outcome of one file-system call in the *_worker.py scripts, comparable
between /strata and tmpfs: "ok", the value it returned, or the errno name.
An int result is taken for a new descriptor and closed."""
import errno
import os


def res(fn, *a, **k):
    try:
        r = fn(*a, **k)
        if isinstance(r, int) and not isinstance(r, bool):
            os.close(r)  # an fd
            return "ok"
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode[e.errno]
