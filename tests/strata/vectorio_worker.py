"""Runs under the shim: vector IO (readv, writev, preadv, pwritev, and their
v2 forms with offset -1 and RWF_* flags) and kernel-side copies (sendfile,
copy_file_range, splice; to and from OTHER, a kernel directory) on files in
DIR, errno cases included.  Prints a JSON object of results, to compare
Strata with tmpfs.   usage: vectorio_worker.py DIR OTHER"""
import errno
import hashlib
import json
import os
import sys

d, other = sys.argv[1], sys.argv[2]
out = {}


def attempt(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = errno.errorcode[e.errno]


def pos(fd):
    return os.lseek(fd, 0, os.SEEK_CUR)


def digest(fd):
    data = os.pread(fd, 1 << 24, 0)
    return [len(data), hashlib.sha256(data).hexdigest()]


p = os.path.join(d, "v.bin")
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
out["writev"] = os.writev(fd, [b"abc", b"", b"defgh", bytes(range(256)) * 400])
out["pos_writev"] = pos(fd)
out["pwritev"] = os.pwritev(fd, [b"XY", b"Z" * 70000], 5)  # inside and past the end
out["pos_pwritev"] = pos(fd)  # unchanged
bufs = [bytearray(7), bytearray(100000), bytearray(50)]
out["preadv"] = os.preadv(fd, bufs, 1)
out["preadv_data"] = hashlib.sha256(b"".join(bufs)).hexdigest()
out["pwritev2_cur"] = os.pwritev(fd, [b"cur", b"rent"], -1, os.RWF_DSYNC)  # at the position
out["pos_cur"] = pos(fd)
out["pwritev2_append"] = os.pwritev(fd, [b"app", b"end"], 0, os.RWF_APPEND)
out["pos_append"] = pos(fd)
os.lseek(fd, 100, os.SEEK_SET)
b1 = bytearray(10)
out["preadv2_cur"] = [os.preadv(fd, [b1], -1, os.RWF_HIPRI), bytes(b1).hex(), pos(fd)]
b2, b3 = bytearray(3), bytearray(4)
out["readv"] = [os.readv(fd, [b2, b3]), bytes(b2 + b3).hex(), pos(fd)]
out["preadv_eof"] = os.preadv(fd, [bytearray(10)], 10 ** 7)
out["readv_short"] = os.preadv(fd, [bytearray(8), bytearray(1 << 20), bytearray(8)], 100)
attempt("preadv_negative", lambda: os.preadv(fd, [bytearray(4)], -5))
attempt("pwritev_minus1_noflags", lambda: os.pwritev(fd, [b"x"], -1))
attempt("pwritev_negative", lambda: os.pwritev(fd, [b"x"], -2, os.RWF_DSYNC))
attempt("pwritev2_bad_flag", lambda: os.pwritev(fd, [b"x"], 0, 0x40000000))
attempt("writev_empty", lambda: os.writev(fd, []))
attempt("writev_too_many", lambda: os.writev(fd, [b"x"] * 1025))
out["file"] = digest(fd)
os.close(fd)

ro = os.open(p, os.O_RDONLY)
attempt("writev_rdonly", lambda: os.writev(ro, [b"x"]))
attempt("pwritev_rdonly", lambda: os.pwritev(ro, [b"x"], 0))
os.close(ro)
wo = os.open(p, os.O_WRONLY | os.O_APPEND)
attempt("readv_wronly", lambda: os.readv(wo, [bytearray(3)]))
attempt("pwritev_o_append", lambda: os.pwritev(wo, [b"tail"], 0))  # appends on Linux
out["pos_o_append"] = pos(wo)
os.close(wo)
dfd = os.open(d, os.O_RDONLY)
attempt("readv_dir", lambda: os.readv(dfd, [bytearray(3)]))
attempt("preadv_dir", lambda: os.preadv(dfd, [bytearray(3)], 0))
os.close(dfd)
attempt("writev_closed", lambda: os.writev(fd, [b"x"]))
fd = os.open(p, os.O_RDONLY)
out["final"] = digest(fd)
os.close(fd)

# ---- sendfile, copy_file_range, splice ----
src = os.open(os.path.join(d, "src.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(src, bytes((i * 7) & 0xFF for i in range(300000)))
os.lseek(src, 0, os.SEEK_SET)
dst = os.open(os.path.join(d, "dst.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
ext = os.open(os.path.join(other, "ext.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
out["sendfile_pos"] = [os.sendfile(dst, src, None, 100000), pos(src), pos(dst)]
out["sendfile_off"] = [os.sendfile(dst, src, 5000, 70000), pos(src), pos(dst)]
out["sendfile_out"] = [os.sendfile(ext, src, 250000, 100000), pos(ext)]  # to a kernel file, to EOF
out["sendfile_in"] = [os.sendfile(dst, ext, 0, 30000), pos(dst)]  # from a kernel file
out["cfr_off"] = os.copy_file_range(src, dst, 2000, 50000, 1000)
out["cfr_pos"] = [os.copy_file_range(src, dst, 1000), pos(src), pos(dst)]
out["cfr_eof"] = os.copy_file_range(src, dst, 10, 400000, 0)
out["cfr_to_kernel"] = [os.copy_file_range(src, ext, 5000, 7, 3), digest(ext)]
r, w = os.pipe()
out["splice_to_pipe"] = [os.splice(src, w, 40000, offset_src=10), pos(src)]
out["splice_from_pipe"] = [os.splice(r, dst, 40000), pos(dst)]
attempt("splice_pipe_offset", lambda: os.splice(r, dst, 10, offset_src=0))
attempt("splice_two_files", lambda: os.splice(src, dst, 10))
ap = os.open(os.path.join(d, "dst.bin"), os.O_WRONLY | os.O_APPEND)
attempt("sendfile_append", lambda: os.sendfile(ap, src, 0, 10))
attempt("cfr_append", lambda: os.copy_file_range(src, ap, 10, 0))
ro = os.open(os.path.join(d, "dst.bin"), os.O_RDONLY)
attempt("sendfile_rdonly", lambda: os.sendfile(ro, src, 0, 10))
for f in (ap, ro, r, w, ext):
    os.close(f)
out["dst"] = digest(dst)
os.close(dst)
os.close(src)

# The write path on a shared open file description: a forked child's writev
# and pwritev2(-1) and an exec'd program's writev and sendfile move the one
# file position the parent sees, as the kernel's do.
sh = os.open(os.path.join(d, "shared.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(sh, b"P1:")
pid = os.fork()
if pid == 0:
    os.writev(sh, [b"c1", b"-", b"c2"])
    os.pwritev(sh, [b"c3", b"c4"], -1, os.RWF_HIPRI)
    os._exit(0)
os.waitpid(pid, 0)
out["pos_after_fork_child"] = pos(sh)
os.write(sh, b"P2:")
src = os.open(os.path.join(d, "src.bin"), os.O_RDONLY)
exec_child = (f"import os; os.writev({sh}, [b'e1', b'e2']); os.lseek({src}, 100, 0); "
              f"print(os.sendfile({sh}, {src}, None, 500), os.lseek({src}, 0, 1))")
import subprocess  # noqa: E402 (only this part of the worker spawns)
res = subprocess.run([sys.executable, "-c", exec_child], pass_fds=(sh, src), capture_output=True,
                     text=True)
out["exec_child"] = [res.returncode, res.stdout.split(), res.stderr[-200:]]
out["pos_after_exec_child"] = [pos(sh), pos(src)]
os.write(sh, b"P3")
out["shared"] = digest(sh)
out["shared_head"] = os.pread(sh, 19, 0).decode()
os.close(sh)
os.close(src)
print(json.dumps(out, sort_keys=True))
