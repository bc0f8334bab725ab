"""Hard links on directory argv[1] (argv[2]: another file system); prints
JSON.  Run on /strata and on tmpfs: the outputs must match."""
import errno
import json
import os
import sys

d, other = sys.argv[1], sys.argv[2]
os.chdir(d)
out = {}


def res(fn):
    try:
        r = fn()
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode[e.errno]


with open("f", "w") as f:
    f.write("one")
os.mkdir("dir")
os.link("f", "g")
os.link("f", "dir/h")
st_f, st_g = os.stat("f"), os.stat("g")
out["nlink_after_two_links"] = st_f.st_nlink
out["same_inode"] = st_f.st_ino == st_g.st_ino == os.stat("dir/h").st_ino
with open("g", "a") as f:
    f.write("+two")
out["read_via_other_name"] = open("dir/h").read()
os.unlink("f")
out["nlink_after_unlink"] = os.stat("g").st_nlink
out["content_after_unlink"] = open("g").read()
with open("victim", "w") as f:
    f.write("victim")
os.link("victim", "victim2")
os.rename("g", "victim")  # over a file that has another name
out["victim2_survives"] = [open("victim2").read(), os.stat("victim2").st_nlink]
out["rename_between_links_is_noop"] = [res(lambda: os.rename("victim", "dir/h")), sorted(os.listdir("dir"))]
out["errors"] = {
    "link_dir": res(lambda: os.link("dir", "dir2")),
    "target_exists": res(lambda: os.link("victim", "victim2")),
    "source_missing": res(lambda: os.link("missing", "x")),
    "target_parent_missing": res(lambda: os.link("victim", "nodir/x")),
    "across_file_systems": res(lambda: os.link("victim", os.path.join(other, f"strata-link-{os.getpid()}"))),
}
fd = os.open("victim", os.O_RDONLY)
os.unlink("victim")
os.unlink("dir/h")
out["open_after_last_name"] = [os.read(fd, 100).decode(), os.fstat(fd).st_nlink]
os.close(fd)
out["listing"] = sorted(os.listdir("."))
os.chdir("/")
print(json.dumps(out, sort_keys=True))
