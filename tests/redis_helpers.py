"""redis-server on Strata (with or without zIO) for tests: its arguments (AOF
always, data in /strata/redis), waiting until it answers, and the waits on
its background saves and rewrites."""
import signal
import socket
import time

import pytest
import redis  # test extra; redis-server itself comes from deploy/setup


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_args(port, *extra):
    """redis-server on 127.0.0.1:port, AOF fsynced on every write, no RDB
    snapshots of its own, data in /strata/redis (made by the caller)."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", "/strata/redis",
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            *extra]


def wait_ready(proc, port, output, tries=300, socket_timeout=None):
    """A client once the server proc on port answers PING (it has loaded its
    data); the test fails with output() (the server's output) if it exits
    first, or after tries * 50 ms."""
    client = redis.Redis(port=port, socket_timeout=socket_timeout)
    for _ in range(tries):
        try:
            client.ping()
            return client
        except (redis.ConnectionError, redis.BusyLoadingError):
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited: {output()}")
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


def wait_rewrite(client):
    for _ in range(600):
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return info["aof_last_bgrewrite_status"]
        time.sleep(0.05)
    return "timeout"


def kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
