"""Namespace cases on directory argv[1] (inside it, with relative paths) and
an error-case table per call; argv[2] is a directory on another file system
(EXDEV).  Prints JSON; run on /strata and on tmpfs, the outputs must match."""
import json
import os
import sys

from worker_outcome import res

d, other = sys.argv[1], sys.argv[2]
out = {}


# working directory and relative paths
os.chdir(d)
out["getcwd"] = os.getcwd() == d
os.mkdir("sub")
os.mkdir("sub/deeper")
with open("sub/f.txt", "w") as f:
    f.write("rel")
os.chdir("sub/deeper")
out["getcwd_deeper"] = os.getcwd() == d + "/sub/deeper"
out["read_dotdot"] = open("../f.txt").read()
os.chdir("../..")
out["getcwd_back"] = os.getcwd() == d
out["listdir_dot"] = sorted(os.listdir("."))
dfd = os.open("sub", os.O_RDONLY | os.O_DIRECTORY)
os.fchdir(dfd)
out["fchdir"] = os.getcwd() == d + "/sub"
out["open_after_fchdir"] = open("f.txt").read()
os.chdir(d)
os.close(dfd)
out["stat_rel"] = os.stat("sub/f.txt").st_size

# fixtures for the error table
with open("file", "w") as f:
    f.write("x")
os.mkdir("dir")
os.mkdir("full")
open("full/a", "w").close()
long_name = "n" * 256
long_path = "/".join(["p" * 200] * 22)

table = {
    "open": [
        ("missing", lambda: os.open("missing", os.O_RDONLY)),
        ("missing_parent", lambda: os.open("nodir/x", os.O_RDONLY | os.O_CREAT, 0o644)),
        ("file_as_dir", lambda: os.open("file/x", os.O_RDONLY)),
        ("excl_exists", lambda: os.open("file", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
        ("dir_for_write", lambda: os.open("dir", os.O_WRONLY)),
        ("file_o_directory", lambda: os.open("file", os.O_RDONLY | os.O_DIRECTORY)),
        ("empty_path", lambda: os.open("", os.O_RDONLY)),
        ("long_name", lambda: os.open(long_name, os.O_RDONLY | os.O_CREAT, 0o644)),
        ("long_path", lambda: os.open(long_path, os.O_RDONLY)),
        ("trailing_slash_file", lambda: os.open("file/", os.O_RDONLY)),
    ],
    "mkdir": [
        ("exists", lambda: os.mkdir("dir")),
        ("exists_file", lambda: os.mkdir("file")),
        ("missing_parent", lambda: os.mkdir("nodir/x")),
        ("under_file", lambda: os.mkdir("file/x")),
        ("long_name", lambda: os.mkdir(long_name)),
    ],
    "rmdir": [
        ("not_empty", lambda: os.rmdir("full")),
        ("file", lambda: os.rmdir("file")),
        ("missing", lambda: os.rmdir("missing")),
        ("dot", lambda: os.rmdir("dir/.")),
    ],
    "unlink": [
        ("dir", lambda: os.unlink("dir")),
        ("missing", lambda: os.unlink("missing")),
        ("under_file", lambda: os.unlink("file/x")),
    ],
    "rename": [
        ("missing", lambda: os.rename("missing", "x")),
        ("dir_over_file", lambda: os.rename("dir", "file")),
        ("file_over_dir", lambda: os.rename("file", "dir")),
        ("dir_over_nonempty", lambda: os.rename("dir", "full")),
        ("into_own_subdir", lambda: os.rename("sub", "sub/deeper/x")),
        ("missing_target_parent", lambda: os.rename("file", "nodir/x")),
        ("across_file_systems", lambda: os.rename("file", os.path.join(other, "x"))),
    ],
    "truncate": [
        ("missing", lambda: os.truncate("missing", 0)),
        ("dir", lambda: os.truncate("dir", 0)),
        ("negative", lambda: os.truncate("file", -1)),
    ],
    "chdir": [
        ("file", lambda: os.chdir("file")),
        ("missing", lambda: os.chdir("missing")),
    ],
    "stat": [
        ("missing", lambda: os.stat("missing")),
        ("trailing_slash_file", lambda: os.stat("file/")),
        ("long_name", lambda: os.stat(long_name)),
    ],
    "access": [
        ("missing", lambda: os.access("missing", os.R_OK) or os.stat("missing")),
        ("exec_on_plain_file", lambda: os.access("file", os.X_OK)),
    ],
}
out["errors"] = {call: {case: res(fn) for case, fn in cases} for call, cases in table.items()}
os.chdir("/")
print(json.dumps(out, sort_keys=True))
