"""PostgreSQL (Debian's 15) for the tests and bench/pg_bench.py: run as the
postgres user, wait until it accepts connections."""
import subprocess

PG = "/usr/lib/postgresql/15/bin"


def as_postgres(*argv):
    return ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups", *argv]


def start_postgres_cmd(cmd, cwd):
    """Start cmd (postgres, maybe under a launcher) in a session of its own;
    return it once it accepts connections."""
    p = subprocess.Popen(cmd, cwd=cwd, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    log = []
    for line in p.stdout:
        log.append(line)
        if "ready to accept connections" in line:
            return p
    p.wait()
    raise RuntimeError("postgres did not start:\n" + "".join(log))
