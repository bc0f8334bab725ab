"""Attacks on a TAS daemon by an unprivileged app (run as uid 65534 by
test_tas_isolation.py, with the system Python).

    isolation_attacks.py MODE RUN_DIR INSTANCE [ARGS...]

Each mode attaches through the low-level API (tas.app / libtas core) or a
raw connection to the app socket, does its damage, prints one JSON line
with what it saw, and where the test needs the damage held in place, prints
{"holding": ...} and waits until its stdin closes.  Modes:
    resize              shrink/grow the segment and the info page, map the
                        info page writable, write it
    ring R F V PORT     after traffic flows on PORT, write value V (0, 1,
                        ones, random) into field F (prod, cons, desc) of
                        ring R (rx, tx)
    blocking PORT       make every descriptor the daemon handed us blocking,
                        fill the core wake-up sockets, never read ours
    idle N              N connections to the app socket that never register
    contexts            attach and create contexts until refused
    listen PORT         listen on PORT (80: below 1024)
    echo PORT           an honest attach + echo with the peer (another uid)
    plant DIR NAME...   try to create symlinks at names in DIR
    fuzz N              N random commands naming any flow id on the data
                        path, then N random control messages (and odd sizes)
"""
import errno
import fcntl
import json
import mmap
import os
import random
import resource
import select
import socket
import sys
import threading
import time

from bindings._tasapp import ffi, lib
from tas.app import TasApp, TasError

PEER = "10.0.0.1"


def out(**kw):
    print(json.dumps(kw), flush=True)


def hold(**kw):
    out(holding=True, **kw)
    sys.stdin.read()


def err_name(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def raw_register(path):
    """Register over a raw socket: (socket, reply, fds)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    m = ffi.new("struct tas_ctl_msg *")
    m.type, m.backlog, m.req_id = lib.TAS_CTL_REGISTER, lib.TAS_SHM_VERSION, 1
    s.send(bytes(ffi.buffer(m)))
    data, fds, _, _ = socket.recv_fds(s, ffi.sizeof("struct tas_ctl_msg"), 64)
    reply = ffi.new("struct tas_ctl_msg *")
    ffi.memmove(reply, data, len(data))
    return s, reply, fds


def resize(sock_path):
    s, reply, fds = raw_register(sock_path)
    seg, info = fds[0], fds[1]
    size = reply.opaque

    def map_info_writable():
        mmap.mmap(info, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def reopen_info_writable():
        fd = os.open(f"/proc/self/fd/{info}", os.O_RDWR)
        try:
            mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    res = {
        "segment_shrink": err_name(lambda: os.ftruncate(seg, 4096)),
        "segment_grow": err_name(lambda: os.ftruncate(seg, size * 2)),
        "info_shrink": err_name(lambda: os.ftruncate(info, 0)),
        "info_grow": err_name(lambda: os.ftruncate(info, 1 << 20)),
        "info_map_writable": err_name(map_info_writable),
        "info_reopen_writable": err_name(reopen_info_writable),
        "info_write": err_name(lambda: os.pwrite(info, b"\xff" * 64, 0)),
    }
    out(**res)
    s.close()


def ring_value(v):
    return {"0": 0, "1": 1, "ones": 0xFFFFFFFF, "random": random.getrandbits(32)}[v]


def ctl_closed(app):
    """True once the daemon closed our control connection (detached us)."""
    p = select.poll()
    p.register(lib.tas_app_ctl_fd(app.handle), select.POLLIN)
    for _fd, ev in p.poll(0):
        if ev & (select.POLLHUP | select.POLLERR):
            return True
    return False


def ring(run_dir, inst, which, field, value, port):
    app = TasApp(inst, run_dir)
    lst = app.listen(port)
    out(listening=port)
    flow = app.accept(lst)
    got = 0
    while got < 256 << 10:             # traffic flows before the attack
        got += len(flow.recv(1 << 16))
    base = ffi.cast("uint8_t *", lib.tas_app_base(app.handle))
    hdr = ffi.cast("struct tas_seg_hdr *", base)
    desc = ffi.cast("struct tas_ctx_shm *", base + hdr.ctx_off[0])
    txq = ffi.cast("struct tas_ctxq_hdr *", base + desc.txq_off)
    # A producer index moved back to exactly the daemon's consumer index is
    # an empty queue, not an attack the daemon could see (the app only loses
    # its own commands).  So 0 and 1 must lie behind both: we post a few
    # commands and let the daemon take all of them before writing.
    while txq.prod < 4 and got < 64 << 20:
        got += len(flow.recv(1 << 16))
    for _ in range(1000 if (which, field) == ("tx", "prod") else 0):
        if txq.cons == txq.prod:
            break
        time.sleep(0.001)
    prod_before = int(txq.prod)
    v = ring_value(value)
    if field == "desc":                # the context descriptor: daemon never reads it
        desc.id, desc.queue, desc.rxq_off, desc.txq_off = v, v, v, v
    else:
        q = ffi.cast("struct tas_ctxq_hdr *", base + (desc.rxq_off if which == "rx"
                                                       else desc.txq_off))
        setattr(q, field, v)
    # Keep the daemon busy with this context: read (it notifies), post (it
    # polls our commands).  Our own libtas may now spin on the queue we
    # broke, so a watcher thread reports and ends us.
    def watch():
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not ctl_closed(app):
            time.sleep(0.02)
        out(detached=ctl_closed(app), got=got, prod_before=prod_before, cons=int(txq.cons))
        os._exit(0)                    # do not tidy up through the broken queues
    threading.Thread(target=watch, daemon=True).start()
    while True:
        app.poll()
        try:
            flow.recv(1 << 16, block=False)
        except TasError:
            pass
        lib.tas_app_wait_all(app.handle, 20)


def blocking(run_dir, inst, port):
    app = TasApp(inst, run_dir)
    lst = app.listen(port)
    out(listening=port)
    flow = app.accept(lst)
    flow.recv(1 << 16)
    ours = lib.tas_app_ev_fd(app.handle)
    made_blocking, filled = [], 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            s = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if s.type == socket.SOCK_DGRAM and fd != ours:
                while True:            # fill the core's wake-up queue
                    try:
                        s.send(b"x", socket.MSG_DONTWAIT)
                        filled += 1
                    except BlockingIOError:
                        break
                    except OSError:
                        break
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)
            made_blocking.append(fd)
        finally:
            s.detach()
    base = ffi.cast("uint8_t *", lib.tas_app_base(app.handle))
    hdr = ffi.cast("struct tas_seg_hdr *", base)
    desc = ffi.cast("struct tas_ctx_shm *", base + hdr.ctx_off[0])
    desc.app_sleeping = 1              # ask to be woken, and never read it
    hold(blocking=len(made_blocking), filled=filled)


def idle(sock_path, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
    socks, refused = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:                           # blocking: waits while the backlog is full
            s.connect(sock_path)
            socks.append(s)
        except OSError:
            refused += 1
            s.close()
    hold(connected=len(socks), refused=refused)
    closed = 0
    for s in socks:
        s.settimeout(0)
        try:
            closed += s.recv(64) == b""
        except OSError:
            pass
    out(closed_by_daemon=closed, held=len(socks))


def contexts(run_dir, inst):
    apps, held, why = [], 0, ""
    while not why:
        try:
            app = TasApp(inst, run_dir)
        except TasError as e:
            why = f"attach: {e}"
            break
        apps.append(app)
        held += 1
        while True:
            try:
                app.create_context()
                held += 1
            except TasError as e:
                if e.errno == errno.EMFILE and lib.tas_app_ctx_count(app.handle) < 16:
                    why = f"create: {e}"
                break
    hold(contexts=held, apps=len(apps), stopped_by=why)


def listen(run_dir, inst, port):
    with TasApp(inst, run_dir) as app:
        try:
            app.listen(port)
            out(result="ok")
        except TasError as e:
            out(result=errno.errorcode.get(e.errno, str(e.errno)))


def echo(run_dir, inst, port):
    with TasApp(inst, run_dir) as app:
        flow = app.connect(PEER, port)
        data = os.urandom(32 << 10)
        flow.sendall(data)
        back = b""
        while len(back) < len(data):
            chunk = flow.recv(1 << 16)
            if not chunk:
                break
            back += chunk
        flow.close()
        out(echoed=back == data)


def fuzz(run_dir, inst, sock_path, n):
    rng = random.Random(13)
    with TasApp(inst, run_dir) as app:
        for _ in range(n):            # other apps' flows, absurd byte counts
            lib.tas_app_post(app.handle, rng.randrange(0, 1 << 17), rng.getrandbits(32),
                             rng.getrandbits(32), rng.getrandbits(16))
        base = ffi.cast("uint8_t *", lib.tas_app_base(app.handle))
        desc = ffi.cast("struct tas_ctx_shm *",
                        base + ffi.cast("struct tas_seg_hdr *", base).ctx_off[0])
        txq = ffi.cast("struct tas_ctxq_hdr *", base + desc.txq_off)
        deadline = time.monotonic() + 30
        while txq.cons != txq.prod and time.monotonic() < deadline:
            time.sleep(0.01)           # let the fast path judge every command
    s, _reply, fds = raw_register(sock_path)
    for fd in fds:
        os.close(fd)
    s.setblocking(False)
    size = ffi.sizeof("struct tas_ctl_msg")
    sent = 0
    for i in range(n):
        m = bytearray(rng.getrandbits(8) for _ in range(size))
        m[0], m[1] = rng.randrange(0, 24), 0                   # mostly known types
        if i % 50 == 49:
            m = m[:rng.randrange(0, size)] + b"x" * rng.randrange(0, 2)  # a bad size
        try:
            s.send(bytes(m))
            sent += 1
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:                # closed on a bad size: open another
            s, _reply, fds = raw_register(sock_path)
            for fd in fds:
                os.close(fd)
            s.setblocking(False)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    out(sent=sent)


def plant(directory, names, target):
    res = {}
    for name in names:
        res[name] = err_name(lambda: os.symlink(target, os.path.join(directory, name)))
    out(**res)


def main(argv):
    mode, run_dir, inst, *args = argv
    sock_path = os.path.join(run_dir, f"{inst}.sock")
    if mode == "resize":
        resize(sock_path)
    elif mode == "ring":
        ring(run_dir, inst, args[0], args[1], args[2], int(args[3]))
    elif mode == "blocking":
        blocking(run_dir, inst, int(args[0]))
    elif mode == "idle":
        idle(sock_path, int(args[0]))
    elif mode == "contexts":
        contexts(run_dir, inst)
    elif mode == "listen":
        listen(run_dir, inst, int(args[0]))
    elif mode == "echo":
        echo(run_dir, inst, int(args[0]))
    elif mode == "fuzz":
        fuzz(run_dir, inst, sock_path, int(args[0]))
    elif mode == "plant":
        plant(args[0], args[2:], args[1])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
