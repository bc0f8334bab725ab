"""Symbolic links on directory argv[1]; prints JSON.  Run on /strata and on
tmpfs: the outputs must match."""
import json
import os
import stat
import sys

from worker_outcome import res

d = sys.argv[1]
os.chdir(d)
out = {}


os.mkdir("dir")
with open("dir/f", "w") as f:
    f.write("target")
os.symlink("dir/f", "rel")
os.symlink(f"{d}/dir", "absdir")
os.symlink("dir", "reldir")
os.symlink("missing", "dangling")
os.symlink("loop2", "loop1")
os.symlink("loop1", "loop2")
os.symlink("../dir/f", "dir/up")
out["read_rel"] = open("rel").read()
out["read_via_abs_dir"] = open("absdir/f").read()
out["read_via_rel_dir_and_back"] = open("reldir/up").read()
out["readlink"] = [os.readlink("rel"), os.readlink("absdir") == f"{d}/dir", os.readlink("dir/up")]
ls, st = os.lstat("rel"), os.stat("rel")
out["lstat"] = [stat.S_ISLNK(ls.st_mode), ls.st_size, oct(stat.S_IMODE(ls.st_mode))]
out["stat"] = [stat.S_ISREG(st.st_mode), st.st_size]
out["dotdot_is_physical"] = sorted(os.listdir("reldir/.."))
out["listdir_via_link"] = sorted(os.listdir("absdir"))
out["scandir_types"] = sorted((e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in os.scandir("."))
out["realpath"] = os.path.realpath("reldir/up") == f"{d}/dir/f"
out["errors"] = {
    "dangling_open": res(lambda: os.open("dangling", os.O_RDONLY)),
    "loop_open": res(lambda: os.open("loop1", os.O_RDONLY)),
    "loop_stat": res(lambda: os.stat("loop1/x")),
    "nofollow_open": res(lambda: os.open("rel", os.O_RDONLY | os.O_NOFOLLOW)),
    "excl_on_link": res(lambda: os.open("rel", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
    "symlink_exists": res(lambda: os.symlink("x", "rel")),
    "readlink_plain_file": res(lambda: os.readlink("dir/f")),
    "readlink_missing": res(lambda: os.readlink("nothing")),
    "rmdir_link_to_dir": res(lambda: os.rmdir("reldir")),
    "link_through_file": res(lambda: os.stat("rel/x")),
}
os.chmod("rel", 0o600)  # follows: the target's mode changes
out["chmod_follows"] = [oct(stat.S_IMODE(os.stat("dir/f").st_mode)), oct(stat.S_IMODE(os.lstat("rel").st_mode))]
os.rename("rel", "rel2")
out["renamed_link_reads"] = open("rel2").read()
os.unlink("rel2")
out["unlink_link_keeps_target"] = os.path.exists("dir/f")
os.chdir("reldir")
out["getcwd_physical"] = os.getcwd() == f"{d}/dir"
os.chdir("/")
print(json.dumps(out, sort_keys=True))
