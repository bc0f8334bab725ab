"""Prefork servers on TAS: workers forked after listen() accept on the
listener they inherited.  Each worker joins the port's listeners in the
daemon (as with SO_REUSEPORT); new connections are spread over the
processes that accept, and a connection belongs to the worker that took it
(its buffers live in that worker's segment)."""
from libtas_helpers import counters, nginx_serves
from test_libtas import NGINX_CONF as SINGLE_PROCESS_CONF

# user root: workers run as nobody otherwise, and pytest's tmp_path is 0700.
NGINX_CONF = (SINGLE_PROCESS_CONF
              .replace("master_process off;\nworker_processes 1;",
                       "user root;\nmaster_process on;\nworker_processes 2;")
              .replace("access_log off;", "log_format bypid '$pid $status';\n"
                       "    access_log {d}/access.log bypid;")
              .replace("listen 8080", "listen 8090"))


def test_nginx_master_and_two_workers(daemon, procs, tmp_path):
    before = counters(daemon)
    # One connection per request: the daemon spreads them over the workers.
    nginx_serves(procs, daemon, tmp_path, NGINX_CONF, 8090, "-H", "Connection: close")
    pids = {line.split()[0] for line in (tmp_path / "access.log").read_text().splitlines()}
    assert len(pids) == 2, f"requests served by {pids}: both workers should take connections"
    after = counters(daemon)
    assert after["tcp_listeners_joined"] - before.get("tcp_listeners_joined", 0) == 2
