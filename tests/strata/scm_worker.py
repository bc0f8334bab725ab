"""Two processes sharing a file over a Unix socket (SCM_RIGHTS) and
posix_spawn file actions, for test_strata_scm_spawn.py.  Every step prints
what it saw, so the same run on tmpfs and on Strata can be compared.

  recv SOCK            accept, receive one fd, write/read/seek through it
  send SOCK DIR        open DIR/shared.txt, write, send the fd, write again
                       (SCM_WORKER_MMSG=1: sendmmsg/recvmmsg, through ctypes)
  spawn DIR            posix_spawn with open and dup2 file actions on DIR
"""
import ctypes
import errno
import os
import socket
import struct
import sys


def show(*a):
    print(*a, flush=True)


class _Iov(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msg(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iov)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsg(ctypes.Structure):
    _fields_ = [("hdr", _Msg), ("len", ctypes.c_uint)]


def _mmsg(fd_to_send=None):
    """One mmsghdr of one byte with room for one SCM_RIGHTS fd (cmsghdr:
    len 8, level 4, type 4, then the fd)."""
    data = ctypes.create_string_buffer(b"x", 1)
    iov = _Iov(ctypes.addressof(data), 1)
    ctl = ctypes.create_string_buffer(24)
    if fd_to_send is not None:
        ctypes.memmove(ctl, struct.pack("=QiiI", 20, socket.SOL_SOCKET, socket.SCM_RIGHTS, fd_to_send), 20)
    m = _MMsg(_Msg(None, 0, ctypes.pointer(iov), 1, ctypes.addressof(ctl), 24 if fd_to_send is None else 24, 0), 0)
    return m, (data, iov, ctl)


def recv_fds_mmsg(c):
    """recvmmsg of one message carrying one fd."""
    libc = ctypes.CDLL(None, use_errno=True)
    m, keep = _mmsg()
    assert libc.recvmmsg(c.fileno(), ctypes.byref(m), 1, 0, None) == 1, ctypes.get_errno()
    ctl = keep[2].raw
    length, level, kind = struct.unpack("=Qii", ctl[:16])
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS) and length == 20
    return [struct.unpack("=i", ctl[16:20])[0]]


def send_fds_mmsg(s, fd):
    libc = ctypes.CDLL(None, use_errno=True)
    m, keep = _mmsg(fd)
    assert libc.sendmmsg(s.fileno(), ctypes.byref(m), 1, 0) == 1, ctypes.get_errno()


MMSG = os.environ.get("SCM_WORKER_MMSG") == "1"  # sendmmsg/recvmmsg instead of sendmsg/recvmsg


def recv(sock_path):
    lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsn.bind(sock_path)
    lsn.listen(1)
    show("ready")
    c, _ = lsn.accept()
    fds = recv_fds_mmsg(c) if MMSG else socket.recv_fds(c, 10, 4)[1]
    fd = fds[0]
    try:
        show("recv offset", os.lseek(fd, 0, os.SEEK_CUR))
        show("recv wrote", os.write(fd, b"from receiver\n"))
        os.lseek(fd, 0, os.SEEK_SET)
        show("recv read", os.read(fd, 100))
        os.lseek(fd, 0, os.SEEK_END)
    except OSError as e:
        show("recv error", errno.errorcode[e.errno])
    os.close(fd)
    c.send(b"k")


def send(sock_path, d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    fd = os.open(f"{d}/shared.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"from sender\n")
    send_fds_mmsg(s, fd) if MMSG else socket.send_fds(s, [b"x"], [fd])
    s.recv(1)  # the receiver is done
    os.write(fd, b"sender again\n")
    os.lseek(fd, 0, os.SEEK_SET)
    show("send read", os.read(fd, 200))


def spawn(d):
    env = dict(os.environ)
    out = f"{d}/spawned.txt"
    pid = os.posix_spawn("/bin/echo", ["echo", "from a spawned echo"], env,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)])
    show("echo status", os.waitpid(pid, 0)[1])
    with open(out, "rb") as f:
        show("echo wrote", f.read(), oct(os.stat(out).st_mode & 0o777))
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo appended"], env,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_APPEND, 0)])
    show("append status", os.waitpid(pid, 0)[1])
    fd = os.open(out, os.O_RDONLY)
    os.read(fd, 5)  # the child shares this offset
    pid = os.posix_spawnp("cat", ["cat"], env, file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0)])
    show("cat status", os.waitpid(pid, 0)[1])
    show("offset after cat", os.lseek(fd, 0, os.SEEK_CUR))
    os.close(fd)
    w = os.open(f"{d}/via_dup2.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo one; echo two >&2"], env,
                         file_actions=[(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, 1, 2),
                                       (os.POSIX_SPAWN_CLOSE, w)])
    show("sh status", os.waitpid(pid, 0)[1])
    os.close(w)
    with open(f"{d}/via_dup2.txt", "rb") as f:
        show("sh wrote", f.read())
    for path, flags in ((f"{d}/no/such/dir", os.O_RDONLY), (f"{d}/spawned.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)):
        try:
            os.posix_spawn("/bin/true", ["true"], env, file_actions=[(os.POSIX_SPAWN_OPEN, 3, path, flags, 0o644)])
            show("spawned anyway")
        except OSError as e:
            show("open action error", errno.errorcode[e.errno])


if __name__ == "__main__":
    {"recv": lambda: recv(sys.argv[2]), "send": lambda: send(sys.argv[2], sys.argv[3]),
     "spawn": lambda: spawn(sys.argv[2])}[sys.argv[1]]()
