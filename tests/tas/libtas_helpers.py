"""Running programs under tas-run and in the peer namespace (libtas tests)."""
import inspect
import os
import subprocess
import sys

from bindings import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def counters(d):
    return stats.read("tas", d.instance)


def syn_counters(d):
    """The daemon's `tassyn` page: SYNs and connects in the fast path."""
    return stats.read("tassyn", d.instance)


def tas_run(procs, d, *cmd, stderr=subprocess.PIPE):
    """Start cmd under tas-run against daemon d."""
    p = subprocess.Popen([sys.executable, "-m", "tas.run", "--instance", d.instance, "--",
                          *cmd], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=stderr)
    procs.append(p)
    return p


def in_peer(procs, d, *cmd):
    p = subprocess.Popen(["ip", "netns", "exec", d.netns, *cmd], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def finish(p, what):
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, f"{what} failed ({p.returncode}): {out}{err}"
    assert "libtas:" not in out + (err or ""), f"{what} fell back to kernel sockets: {err}"
    return out


def nginx_serves(procs, d, tmp_path, conf_template, port, *wrk_args):
    """Start nginx under tas-run with conf_template (formatted with d=the
    directory), fetch a 1 MiB file intact, then run wrk against it; returns
    wrk's report.  nginx is stopped and must not have fallen back."""
    import hashlib
    import re
    (tmp_path / "www").mkdir()
    blob = os.urandom(1 << 20)
    (tmp_path / "www" / "blob").write_bytes(blob)
    (tmp_path / "www" / "index.html").write_text("hello\n")
    conf = tmp_path / "nginx.conf"
    conf.write_text(conf_template.format(d=tmp_path))
    srv = tas_run(procs, d, "nginx", "-c", str(conf), "-p", str(tmp_path))
    fetch = ("import hashlib, sys, time, urllib.request\n"
             "for i in range(600):\n"
             "    try:\n"
             f"        data = urllib.request.urlopen('http://10.0.0.2:{port}/blob').read(); break\n"
             "    except OSError:\n"
             "        time.sleep(0.1)\n"
             "print(hashlib.sha256(data).hexdigest())")
    got = d.ns_run(sys.executable, "-c", fetch, timeout=120)
    assert got.stdout.strip() == hashlib.sha256(blob).hexdigest(), got.stderr
    load = d.ns_run("wrk", "-t1", "-c8", "-d2s", *wrk_args, f"http://10.0.0.2:{port}/index.html",
                    timeout=120)
    assert load.returncode == 0, load.stderr
    done = re.search(r"(\d+) requests in", load.stdout)
    assert done and int(done.group(1)) > 0, load.stdout
    assert "Non-2xx" not in load.stdout, load.stdout
    srv.terminate()
    _, err = srv.communicate(timeout=60)
    assert "libtas:" not in err, err
    return load.stdout


# Source prepended to the programs tests run under the shim: read s until
# EOF (or limit bytes), handing each chunk to each(); returns the count.
# recv_upto: up to n bytes, fewer at EOF; recv_exact: n bytes, or the
# program ends at an early EOF.
def recv_upto(s, n):
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        if not d:
            break
        got += d
    return got


RECV_UPTO = "\n" + inspect.getsource(recv_upto)
RECV_EXACT = RECV_UPTO + """
def recv_exact(s, n):
    got = recv_upto(s, n)
    if len(got) < n:
        raise SystemExit(f"EOF after {got!r}")
    return got
"""

READ_ALL = """
def read_all(s, each, chunk=65536, limit=None):
    n = 0
    while limit is None or n < limit:
        d = s.recv(chunk)
        if not d:
            break
        each(d)
        n += len(d)
    return n
"""


# Echo servers of the tests (argv[1]: port, argv[2]: address, default every
# one): ECHO_THREADS echoes each connection in a thread of its own until EOF,
# ECHO_SEQUENTIAL one connection after another.  Each prints "listening".
ECHO_LISTEN = """
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("listening", flush=True)
def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)
"""
ECHO_THREADS = ECHO_LISTEN + """
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""
ECHO_SEQUENTIAL = ECHO_LISTEN + """
while True:
    echo(s.accept()[0])
"""
