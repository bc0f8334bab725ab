"""Directory descriptors and the working directory name a directory, not a
path: what happens to them when the path changes under them.  Prints one
JSON object; run on /strata and on tmpfs and compared (test_strata_namespace).

usage: dirfd_worker.py DIR
"""
import errno
import json
import os
import sys


def attempt(fn):
    try:
        return fn()
    except OSError as e:
        return "ERR " + errno.errorcode[e.errno]


def main():
    d = sys.argv[1]
    out = {}
    # openat(c, ".."), then rmdir c: the descriptor still names b (rm -rf below depth 4)
    os.makedirs(d + "/a/b/c")
    fc = os.open(d + "/a/b/c", os.O_RDONLY | os.O_DIRECTORY)
    fb = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fc)
    os.close(fc)
    os.rmdir("c", dir_fd=fb)
    out["dotdot_of_dotdot"] = attempt(lambda: os.fstat(os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fb)).st_ino
                                      == os.stat(d + "/a").st_ino)
    out["create_via_dotdot_fd"] = attempt(lambda: os.close(os.open("n", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fb)))
    out["listdir_via_fd"] = attempt(lambda: sorted(os.listdir(fb)))
    # rename the directory of an open descriptor, make another at the old name
    os.makedirs(d + "/p/q")
    fq = os.open(d + "/p/q", os.O_RDONLY | os.O_DIRECTORY)
    os.rename(d + "/p/q", d + "/p/moved")
    os.mkdir(d + "/p/q")
    out["create_after_rename"] = attempt(lambda: os.close(os.open("made", os.O_CREAT | os.O_WRONLY, 0o644,
                                                                  dir_fd=fq)))
    out["moved"] = sorted(os.listdir(d + "/p/moved"))
    out["new_q"] = sorted(os.listdir(d + "/p/q"))
    # an ancestor renamed
    os.rename(d + "/p", d + "/p2")
    out["after_ancestor_rename"] = attempt(lambda: os.stat("made", dir_fd=fq).st_size)
    # removed directory
    os.makedirs(d + "/gone")
    fg = os.open(d + "/gone", os.O_RDONLY | os.O_DIRECTORY)
    os.rmdir(d + "/gone")
    os.mkdir(d + "/gone")
    out["create_in_removed"] = attempt(lambda: os.open("x", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fg))
    out["gone_after"] = sorted(os.listdir(d + "/gone"))
    # the working directory renamed, then removed
    os.makedirs(d + "/w")
    os.chdir(d + "/w")
    os.rename(d + "/w", d + "/w2")
    os.mkdir(d + "/w")
    out["cwd_after_rename"] = attempt(lambda: os.getcwd()[len(d):])
    with open("rel", "w") as f:
        f.write("x")
    out["w2"] = sorted(os.listdir(d + "/w2"))
    out["w"] = sorted(os.listdir(d + "/w"))
    os.unlink("rel")
    os.rmdir(d + "/w2")
    out["cwd_removed"] = attempt(os.getcwd)
    out["create_in_removed_cwd"] = attempt(lambda: os.open("y", os.O_CREAT | os.O_WRONLY, 0o644))
    os.chdir(d)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
