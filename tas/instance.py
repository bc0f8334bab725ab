"""One running daemon per instance name: a lock file in the run directory.

The run directory holds the daemon's sockets and lock: it must be ours and
writable by nobody else, or another user could plant names in it.
"""
import fcntl
import os
import stat


class AlreadyRunning(Exception):
    pass


def secure_run_dir(path):
    """Create the run directory (0755) or check an existing one: a real
    directory (not a link), owned by us, not group/other-writable."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"tas.run_dir {path} is not a directory (a symbolic link?)")
    if st.st_uid != os.geteuid():
        raise OSError(f"tas.run_dir {path} belongs to uid {st.st_uid}, not to the daemon's "
                      f"uid {os.geteuid()}")
    if st.st_mode & 0o022:
        raise OSError(f"tas.run_dir {path} is writable by others (mode "
                      f"{stat.S_IMODE(st.st_mode):04o}): other users could plant files in it")


class InstanceLock:
    def __init__(self, run_dir, instance):
        self.path = os.path.join(run_dir, f"{instance}.lock")
        self.instance = instance
        self.fd = None

    def acquire(self):
        secure_run_dir(os.path.dirname(self.path))
        # A running daemon's lock is a regular file of ours, reused across
        # runs (so no O_EXCL); anything else at the name (a link, a file of
        # another user) is nobody's lock: replace it.  Never follow a link.
        try:
            st = os.lstat(self.path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"instance '{self.instance}' is already running "
                                 f"(pid {holder}, lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.unlink(self.path)
            os.close(self.fd)
            self.fd = None
