"""Strata descriptors across exec: shell redirections and pipelines, Python
subprocess/posix_spawn/system/popen, close-on-exec, and loud failure where a
descriptor cannot be carried.  Each case runs the same program on /strata and
on tmpfs (both under the shim) and compares the outputs."""
import errno
import json
import os
import subprocess
import sys

import pytest

from strata_helpers import fsck_clean, shim_env, strata_cli

HERE = os.path.dirname(os.path.abspath(__file__))


def run(pool, argv):
    r = subprocess.run(argv, env=shim_env(pool), capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_shell_redirections_match_tmpfs(pool, tmp_path, shell):
    script = os.path.join(HERE, "redirections.sh")
    rc, out, err = run(pool, [shell, "-c", f"mkdir /strata/d && exec {shell} {script} /strata/d"])
    rc_t, out_t, err_t = run(pool, [shell, script, str(tmp_path)])
    assert (rc, err) == (rc_t, err_t.replace(str(tmp_path), "/strata/d"))
    assert out == out_t
    assert "seq rc=0\n1\n2\n3\n4\n5\n5\nhello\n" in out  # the two reports
    assert "one\ntwo\nthree\n" in out                     # a child wrote between the shell's writes
    fsck_clean(pool)


def test_python_spawn_paths_match_tmpfs(pool, tmp_path):
    worker = os.path.join(HERE, "spawn_worker.py")
    rc, out, err = run(pool, ["sh", "-c", f"mkdir /strata/py && exec {sys.executable} {worker} /strata/py"])
    assert rc == 0, err
    rc_t, out_t, err_t = run(pool, [sys.executable, worker, str(tmp_path)])
    assert rc_t == 0, err_t
    got, want = json.loads(out.splitlines()[-1]), json.loads(out_t.splitlines()[-1])
    assert got == want
    assert want["pass_fds"] == "parent\nchild\nparent2\n" and want["cloexec"] == "via8\n"
    fsck_clean(pool)


def test_descriptor_that_cannot_be_carried_fails_loudly(pool):
    """A program without libstrata, or attached to another pool, gets EBADF
    (and, with libstrata, a message) -- never a placeholder that swallows
    the bytes."""
    rc, out, err = run(pool, ["sh", "-c",
                              "exec 3>/strata/loud.txt; "
                              "env -u LD_PRELOAD sh -c 'echo lost >&3'; echo rc=$?; "
                              "env -u LD_PRELOAD cat <&3; echo rc=$?; "
                              "STRATA_POOL=/dev/shm/no-such-strata.pool sh -c 'echo lost >&3'; echo rc=$?"])
    assert out == "rc=1\nrc=1\nrc=1\n"
    assert "I/O error" in err and "Bad file descriptor" in err
    assert "inherited fd 3 is a Strata file, but the pool cannot be attached" in err
    assert strata_cli("cat", "/strata/loud.txt", pool=pool).stdout == ""


EXEC_PROG = """
import fcntl, os, subprocess, sys
print(os.lseek(3, 0, os.SEEK_CUR), bool(fcntl.fcntl(3, fcntl.F_GETFL) & os.O_APPEND))
os.write(3, b"!")
other = "import os\\ntry: os.open('/strata/l.txt', os.O_WRONLY)\\nexcept OSError as e: os._exit(e.errno)"
print(subprocess.run([sys.executable, "-c", other], env=dict(os.environ, STRATA_LEASE_WAIT_MS="50")).returncode)
"""


def test_exec_keeps_offset_flags_and_lease(pool, tmp_path):
    """exec in place (same pid): the new program adopts the fd with its
    offset, O_APPEND and the write lease, so another process's writable open
    of the file waits and fails with EBUSY while it runs."""
    prog = tmp_path / "prog.py"
    prog.write_text(EXEC_PROG)
    rc, out, err = run(pool, ["sh", "-c", f"printf abc > /strata/l.txt; exec 3>>/strata/l.txt; "
                                          f"exec {sys.executable} {prog}"])
    assert rc == 0, err
    assert out.splitlines() == ["0 True", str(errno.EBUSY)]
    assert strata_cli("cat", "/strata/l.txt", pool=pool).stdout == "abc!"
    fsck_clean(pool)


def test_a_program_that_clears_its_environment_keeps_its_pool(pool):
    # nginx's workers keep only TZ of their environment; before, libstrata
    # read STRATA_POOL and STRATA_MOUNT at the first file call, after the
    # clearing, and a worker opened the default pool and prefix instead of
    # its master's (kb_getenv: the values as the program started)
    code = ("import os\n"
            "os.environ.clear()\n"
            "with open('/strata/kept', 'w') as f:\n"
            "    f.write('same pool')\n")
    r = subprocess.run([sys.executable, "-c", code], env=shim_env(pool), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "strata:" not in r.stderr, r.stderr
    assert strata_cli("cat", "/strata/kept", pool=pool).stdout == "same pool"
    fsck_clean(pool)


APPEND_FORK = r"""
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
os.write(fd, b"before\n")
pid = os.fork()
tag = b"c" if pid == 0 else b"p"
for i in range(int(sys.argv[2])):
    os.write(fd, tag + b"%d\n" % i)
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
os.close(fd)
"""


@pytest.mark.parametrize("n", [3, 1500])
def test_append_from_two_processes_sharing_a_description(pool, tmp_path, n):
    """O_APPEND writes of a parent and its forked child through the one
    description: every line of both is there, none over another.  Each
    process used to append at the end it saw; the parent's (the lease
    holder's) appends stayed in its log, the child's were digested at once
    at the same offsets, and the parent's digest wrote over them: all n of
    the child's lines were lost."""
    for d in ("/strata", str(tmp_path)):
        rc, out, err = run(pool, [sys.executable, "-c", APPEND_FORK, d + "/shared.log", str(n)])
        assert rc == 0, err
    rc, got, err = run(pool, ["cat", "/strata/shared.log"])
    assert rc == 0, err
    want = (tmp_path / "shared.log").read_text()
    assert sorted(got.split()) == sorted(want.split())
    assert len(got) == len(want)
    assert got.count("\n") == 2 * n + 1 and got.startswith("before\n")
    # each process's lines in its own order
    for tag in "pc":
        assert [x for x in got.split() if x[0] == tag] == [f"{tag}{i}" for i in range(n)]
    fsck_clean(pool)


def test_shell_background_job_and_foreground_append_to_one_redirection(pool, tmp_path):
    """`( a & b; wait ) >> log`: the subshell holds the description, its
    background child shares it; both append."""
    script = ("( for i in $(seq 1 400); do echo a$i; done & "
              "for i in $(seq 1 400); do echo b$i; done; wait ) >> \"$1\"/log; "
              "grep -c ^a \"$1\"/log; grep -c ^b \"$1\"/log; wc -l < \"$1\"/log")
    rc, out, err = run(pool, ["bash", "-c", script, "sh", "/strata"])
    assert rc == 0, err
    rc_t, out_t, err_t = run(pool, ["bash", "-c", script, "sh", str(tmp_path)])
    assert (out, err) == (out_t, err_t)
    assert out == "400\n400\n800\n"
    fsck_clean(pool)


APPENDER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
for i in range(int(sys.argv[3])):
    os.write(fd, sys.argv[2].encode() + b"%d\n" % i)
os.close(fd)
"""


def test_shared_writers_append_to_one_file_at_once(pool):
    """Two unrelated processes with STRATA_SHARED_WRITERS=1 (no leases)
    opening one file O_APPEND and appending at the same time, as two
    programs may on Linux: every line of both is there.  Each used to append
    at the end it saw before publishing; lines of both were written at the
    same offsets and some were lost (8 and 9 of 3,000 each in one run)."""
    n = 3000
    env = shim_env(pool, STRATA_SHARED_WRITERS="1")
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, "/strata/both.log", tag, str(n)], env=env,
                              stderr=subprocess.PIPE, text=True) for tag in "ab"]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rc, got, err = run(pool, ["cat", "/strata/both.log"])
    assert rc == 0, err
    for tag in "ab":
        assert [x for x in got.split() if x[0] == tag] == [f"{tag}{i}" for i in range(n)]
    assert got.count("\n") == 2 * n
    fsck_clean(pool)


SHARED_VIEW = r"""
import json, os, sys
p = sys.argv[1]
fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
r, w = os.pipe()
pid = os.fork()
if pid == 0:                       # writes after the parent, through the shared offset
    os.read(r, 1)
    os.write(fd, b"child1\n")
    os.pwrite(fd, b"C", 0)         # over the parent's first byte, later than it
    os._exit(0)
os.write(fd, b"parent1\n")
os.write(w, b"x")
os.waitpid(pid, 0)
out = {"size": os.fstat(fd).st_size, "pos": os.lseek(fd, 0, os.SEEK_CUR),
       "end": os.lseek(fd, 0, os.SEEK_END), "read": os.pread(fd, 100, 0).decode()}
os.write(fd, b"parent2\n")
os.close(fd)
out["final"] = open(p).read()
print(json.dumps(out))
"""


def test_parent_sees_what_a_child_wrote_through_the_shared_description(pool, tmp_path):
    """A forked child writes through the description after the parent: the
    parent's fstat, SEEK_END and reads show it, and the child's later
    overwrite of the parent's byte stays.  The parent (the lease holder) used
    to read its own undigested overlay: size 8 and only its own line, and its
    later digest put its byte back over the child's."""
    outs = []
    for d in ("/strata", str(tmp_path)):
        rc, out, err = run(pool, [sys.executable, "-c", SHARED_VIEW, d + "/view"])
        assert rc == 0, err
        outs.append(json.loads(out))
    assert outs[0] == outs[1]
    assert outs[1]["final"] == "Carent1\nchild1\nparent2\n"
    fsck_clean(pool)


FD_LINKS = r"""
d=$1
echo hello > $d/in
cat /dev/stdin < $d/in
wc -c < $d/in; wc -c /dev/stdin < $d/in | cut -d' ' -f1
(echo via-dev-stdout > /dev/stdout) > $d/out; cat $d/out
python3 -c 'open("/dev/stdout", "w").write("py\n")' > $d/out2; cat $d/out2
python3 -c 'import sys; print(open(sys.argv[1]).read().strip())' /dev/stdin < $d/in
exec 5< $d/in; cat /dev/fd/5 /proc/self/fd/5; exec 5<&-
stat -L -c %s /dev/stdin < $d/in
(echo x; echo y > /dev/stdout; echo z) >> $d/log; cat $d/log
"""


def test_dev_stdin_stdout_and_proc_fd_links_name_the_file(pool, tmp_path):
    """/dev/stdin, /dev/stdout, /dev/fd/N and /proc/self/fd/N of a Strata fd
    reopen its file, as the kernel's links do.  They used to reach the fd's
    kernel placeholder: `cat /dev/stdin < /strata/f` printed the bytes of the
    shared description's state memfd, `wc -c /dev/stdin` said 0, and
    `echo x > /dev/stdout` into a Strata file was lost."""
    rc, got, err = run(pool, ["bash", "-c", FD_LINKS, "sh", "/strata"])
    assert rc == 0, err
    rc, want, err_t = run(pool, ["bash", "-c", FD_LINKS, "sh", str(tmp_path)])
    assert rc == 0, err_t
    assert (got, err) == (want, err_t)
    assert got.startswith("hello\n6\n6\nvia-dev-stdout\npy\nhello\nhello\nhello\n6\n")
    fsck_clean(pool)


def test_shared_writers_give_their_slot_back_after_an_append(pool):
    """A shared-writer process returns its log slot once its log is
    digested, so more such processes than slots can write (PostgreSQL's
    backends).  Appends are digested as they are made; the slot used to stay
    claimed after one, and the 9th appending process got EMFILE (the 17th
    on a pool of 16)."""
    code = ("import os, sys, time\n"
            "fd = os.open('/strata/sw.log', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)\n"
            "os.write(fd, b'p%d\\n' % int(sys.argv[1])); print('ok', flush=True)\n"
            "sys.stdin.read()\n")
    env = shim_env(pool, STRATA_SHARED_WRITERS="1")
    procs = []
    try:
        for i in range(24):  # three times the pool's 8 slots, all alive at once
            p = subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline() == "ok\n", p.stderr.read()
    finally:
        for p in procs:
            p.communicate(input="", timeout=60)
    rc, got, err = run(pool, ["cat", "/strata/sw.log"])
    assert sorted(got.split()) == sorted(f"p{i}" for i in range(24))
    fsck_clean(pool)
