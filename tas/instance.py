"""One running daemon per instance name: a lock file in the run directory."""
import fcntl
import os


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, run_dir, instance):
        self.path = os.path.join(run_dir, f"{instance}.lock")
        self.instance = instance
        self.fd = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
