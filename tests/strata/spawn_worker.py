"""Descriptors handed to other programs (subprocess pass_fds, stdin/stdout,
posix_spawn, os.system, close-on-exec) on directory argv[1]; prints JSON.
Run under the Strata shim on /strata and on tmpfs: the outputs must match."""
import json
import os
import subprocess
import sys

d = sys.argv[1]
out = {}

fd = os.open(f"{d}/p.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"parent\n")
subprocess.run(["sh", "-c", f"echo child >&{fd}"], pass_fds=[fd], check=True)
out["offset_after_child"] = os.lseek(fd, 0, os.SEEK_CUR)  # one open file description
os.write(fd, b"parent2\n")
out["pass_fds"] = os.pread(fd, 100, 0).decode()
out["child_reads_by_path"] = subprocess.run(["cat", f"{d}/p.txt"], capture_output=True).stdout.decode()

with open(f"{d}/q.txt", "w") as f:
    f.write("header\n")
    f.flush()
    subprocess.run(["seq", "3"], stdout=f, check=True)
    subprocess.run(["sh", "-c", "echo to-stderr >&2"], stderr=f, check=True)
    f.write("footer\n")
with open(f"{d}/q.txt") as f:
    out["stdout_file"] = f.read()
with open(f"{d}/q.txt") as f:
    f.readline()
    f.seek(len("header\n"))  # the child reads from our offset on
    out["stdin_file"] = subprocess.run(["head", "-n", "2"], stdin=f, capture_output=True).stdout.decode()

# close-on-exec: Python's fds are O_CLOEXEC unless made inheritable
ce = os.open(f"{d}/ce.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(ce, 9, inheritable=False)
os.dup2(ce, 8, inheritable=True)
pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo via8 >&8; echo via9 >&9 2>/dev/null || echo closed9"],
                     os.environ)
out["posix_spawn_status"] = os.waitpid(pid, 0)[1]
os.close(9)
os.close(8)
os.close(ce)
with open(f"{d}/ce.txt") as f:
    out["cloexec"] = f.read()

out["system"] = os.system(f"echo from-system > {d}/sys.txt; cat {d}/sys.txt >> {d}/sys2.txt")
with open(f"{d}/sys2.txt") as f:
    out["system_file"] = f.read()
with os.popen(f"cat {d}/sys.txt") as p:
    out["popen"] = p.read()
print(json.dumps(out, sort_keys=True))
