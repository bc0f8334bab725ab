"""The whole stack for the ORP tests: a Strata pool, a TAS daemon whose
receive buffers may live in that pool, and redis-server under kbrun."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import redis

from tasd import Daemon, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "orp_client.py")
AOF_DIR = "/strata/redis"


def strata(pool, *args):
    r = subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"strata {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


def make_pool(size="1G", ref_size="256M"):
    """A fresh pool with a ref area big enough for the daemon's receive rings."""
    path = f"/dev/shm/orp-test-{uuid.uuid4().hex[:8]}.pool"
    strata(path, "mkfs", "--size", size, "--log-size", "64M", "--ref-size", ref_size,
           "--slots", "8")
    strata(path, "run", "--", "mkdir", "-p", AOF_DIR)
    return path


def daemon_extra(pool, orp, rx_buf=None, app_segment="64M"):
    lines = ["[buffers]"]
    if orp:
        # The segment is a slice of make_pool's 256 MiB ref area: 64 MiB holds
        # the queues and 100+ connections' 256 KiB RX + TX rings, and the
        # area a restarted redis's slice next to a quarantined one.
        lines += ['backing = "nvm"', f'app_segment = "{app_segment}"']
    if rx_buf:
        lines.append(f"rx_buf = {rx_buf}")
    lines += ["[nvm]", f'pool_path = "{pool}"']
    return "\n".join(lines) + "\n"


def start_daemon(make_daemon, pool, orp, **kw):
    return make_daemon(extra=daemon_extra(pool, orp, **kw)).start()


def redis_args(port=6379, bind=None):
    args = ["redis-server", "--port", str(port), "--protected-mode", "no", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", AOF_DIR,
            "--auto-aof-rewrite-percentage", "0", "--daemonize", "no"]
    return args + (["--bind", bind] if bind else [])


def free_port():
    """A port no kernel socket uses (redis also listens on :: through the kernel)."""
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


def start_redis_on_stack(procs, d, pool, orp):
    """redis-server on the whole stack (libzio:libtas:libstrata) against daemon d;
    its port is in p.port."""
    cmd = [sys.executable, "-m", "kb.run", "-i", d.instance]
    cmd += ["--orp"] if orp else ["--pool", pool]
    port = free_port()
    p = subprocess.Popen([*cmd, "--", *redis_args(port)], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    procs.append(p)
    log = []
    for line in p.stdout:
        log.append(line)
        if "Ready to accept connections" in line:
            p.port = port
            return p
    raise AssertionError("redis-server did not start:\n" + "".join(log))


def run_client(procs, d, port, logfile, nkeys, seed, rewrite_at=None):
    args = ["ip", "netns", "exec", d.netns, sys.executable, CLIENT, "10.0.0.2", str(port),
            str(logfile), str(nkeys), str(seed)]
    if rewrite_at is not None:
        args += ["--rewrite-at", str(rewrite_at)]
    p = subprocess.Popen(args, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def acked(logfile):
    if not os.path.exists(logfile):
        return {}
    out = {}
    with open(logfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) == 64:   # not a line cut by a kill
                out[parts[0]] = parts[1]
    return out


def wait_acked(logfile, n, client):
    wait_until(lambda: len(acked(logfile)) >= n or client.poll() is not None,
               f"{n} acknowledged SETs")


def kill(p):
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()


def reload_and_check(procs, pool, expected):
    """Restart redis-server on kernel sockets over the same Strata pool and
    compare every acknowledged value."""
    import hashlib
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "strata.cli", "--pool", pool, "run", "--",
                          *redis_args(port, "127.0.0.1")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    procs.append(p)
    client = redis.Redis(port=port, socket_timeout=120)
    for _ in range(6000):
        try:
            client.ping()
            break
        except (redis.ConnectionError, redis.BusyLoadingError):
            if p.poll() is not None:
                raise AssertionError(p.stdout.read().decode())
            time.sleep(0.05)
    missing, wrong = [], []
    for key, sha in expected.items():
        v = client.get(key)
        if v is None:
            missing.append(key)
        elif hashlib.sha256(v).hexdigest() != sha:
            wrong.append(key)
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # it closes the connection as it exits
    p.wait(timeout=60)
    return missing, wrong
