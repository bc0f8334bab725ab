"""Runs under the shim: descriptor semantics (dup family, fcntl, shared
offsets, close) and fork.  Prints a JSON object of observations."""
import errno
import fcntl
import json
import os

out = {}
fd = os.open("/strata/s.txt", os.O_RDWR | os.O_CREAT, 0o644)
out["fd_is_small_int"] = fd < 1024
fd2 = os.dup2(fd, 200)
os.write(fd2, b"hello ")
os.write(fd, b"world")  # shared offset: appended after "hello "
out["shared_offset"] = os.pread(fd, 100, 0).decode()
fd3 = fcntl.fcntl(fd, fcntl.F_DUPFD, 300)
out["f_dupfd_min"] = fd3 >= 300
os.close(fd)  # the duplicates stay usable
out["after_close"] = os.pread(fd2, 5, 0).decode()
fl = fcntl.fcntl(fd2, fcntl.F_GETFL)
fcntl.fcntl(fd2, fcntl.F_SETFL, fl | os.O_APPEND)
out["append_flag"] = bool(fcntl.fcntl(fd3, fcntl.F_GETFL) & os.O_APPEND)  # one description
fcntl.fcntl(fd3, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
out["cloexec"] = fcntl.fcntl(fd3, fcntl.F_GETFD) == fcntl.FD_CLOEXEC
fcntl.lockf(fd3, fcntl.LOCK_EX | fcntl.LOCK_NB)  # accepted, not enforced
try:
    os.close(fd)
except OSError as e:
    out["double_close"] = errno.errorcode[e.errno]

# a daemon-style sweep over every descriptor must not break Strata
for n in range(3, 1024):
    if n not in (fd2, fd3):
        try:
            os.close(n)
        except OSError:
            pass
os.mkdir("/strata/after_sweep")
out["after_fd_sweep"] = os.path.isdir("/strata/after_sweep")

# closerange closes Strata fds through Strata: the number, once reused by the
# kernel for a real file, is a real file again
fx = os.open("/strata/cr.txt", os.O_RDWR | os.O_CREAT, 0o644)
os.closerange(fx, fx + 1)
real = os.open("/dev/zero", os.O_RDONLY)
out["closerange_reuse"] = (real == fx, os.read(real, 4) == bytes(4))
os.close(real)

pid = os.fork()
if pid == 0:
    res = {}
    try:
        os.write(fd2, b"x")
        res["child_write_inherited"] = "ok"
    except OSError as e:
        res["child_write_inherited"] = errno.errorcode[e.errno]
    res["child_read_inherited"] = os.pread(fd2, 5, 0).decode()
    c = os.open("/strata/child.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(c, b"from child")
    os.close(c)
    with open("/strata/child.json", "w") as f:
        json.dump(res, f)
    os._exit(0)
_, status = os.waitpid(pid, 0)
out["child_status"] = status
# one open file description: the child's append moved the offset we see
out["parent_sees_child_write"] = os.pread(fd2, 100, 0).decode()
out["offset_after_child"] = os.lseek(fd2, 0, os.SEEK_CUR)
with open("/strata/child.json") as f:
    out.update(json.load(f))
with open("/strata/child.txt") as f:
    out["child_file"] = f.read()
os.close(fd2)
os.close(fd3)
print(json.dumps(out))
