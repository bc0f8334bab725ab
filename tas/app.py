"""Python low-level API to a TAS daemon (for tests and tools).

    app = TasApp("tas0")
    lst = app.listen(5000)
    conn = app.accept(lst)           # or app.connect("10.0.0.1", 5000)
    conn.sendall(b"...")
    data = conn.recv(65536)          # b"" once the peer closed
    conn.close()

    ctx = app.create_context()       # own queues, eventfd and fast-path queue
    conn = app.connect("10.0.0.1", 5000, ctx=ctx)

Wraps libtas's core (include/tas/app.h) through cffi; payload moves through
the flow buffers in the app's segment with the same C code as libtas's
socket calls (struct tas_rx / struct tas_tx).
"""
import errno
import ipaddress
import os

from bindings._tasapp import ffi, lib


class TasError(OSError):
    pass


def _check(status, what):
    if status < 0:
        raise TasError(-status, f"{what}: {os.strerror(-status)}")
    return status


class Flow:
    def __init__(self, app, msg, ctx):
        self.app = app
        self.ctx = ctx            # the app's context index the flow belongs to
        self.id = msg.flow_id
        self.local = (str(ipaddress.IPv4Address(msg.local_ip)), msg.local_port)
        self.remote = (str(ipaddress.IPv4Address(msg.remote_ip)), msg.remote_port)
        # where the flow's rings lie in the segment (app.mem), for inspection
        self.rx_off, self.rx_size = msg.rx_off, msg.rx_size
        self.tx_off, self.tx_size = msg.tx_off, msg.tx_size
        # ring bookkeeping lives in libtas's core, shared with the socket shim
        self.rx = ffi.new("struct tas_rx *")
        lib.tas_rx_open(app.handle, self.rx, self.id, ctx, msg.rx_off, msg.rx_size)
        self.tx = ffi.new("struct tas_tx *")
        lib.tas_tx_open(self.tx, msg.tx_off, msg.tx_size)
        self.rx_fin = False
        self.reset = False
        self.closed = False

    @property
    def rx_ready(self):
        """Bytes received and not yet read."""
        return lib.tas_rx_ready(self.rx)

    # -- receive -------------------------------------------------------------
    def recv(self, max_bytes, block=True):
        """Up to max_bytes; b"" at end of stream; None if none and not blocking."""
        while self.rx_ready == 0:
            if self.reset:
                raise TasError(errno.ECONNRESET, "connection reset by peer")
            if self.rx_fin:
                return b""
            if not block:
                return None
            self.app.wait()
        buf = bytearray(min(max_bytes, self.rx_ready))
        n = lib.tas_rx_copy(self.app.handle, self.rx, 0, ffi.from_buffer(buf), len(buf))
        lib.tas_rx_consume(self.app.handle, self.rx, n)
        lib.tas_rx_release(self.app.handle, self.rx, 0)
        return bytes(buf)

    # -- send ----------------------------------------------------------------
    def send(self, data, block=True):
        """Append as much of data as fits; returns the byte count."""
        while self.tx.free == 0:
            if self.reset:
                raise TasError(errno.ECONNRESET, "connection reset by peer")
            if not block:
                return 0
            self.app.wait()
        n = lib.tas_tx_append(self.app.handle, self.tx, ffi.from_buffer(data),
                              min(len(data), self.tx.free))
        lib.tas_app_post_ctx(self.app.handle, self.ctx, self.id, 0, n, 0)
        return n

    def sendall(self, data):
        view = memoryview(data)
        while view:
            view = view[self.send(view):]

    def close(self, reset=False):
        if self.closed:
            return
        self.closed = True
        lib.tas_rx_close(self.app.handle, self.rx)
        if not reset and not self.reset:
            lib.tas_app_post_ctx(self.app.handle, self.ctx, self.id, 0, 0,
                                 lib.TAS_ATX_FL_TXFIN)
        self.app.request(lib.TAS_CTL_CLOSE, flow_id=self.id,
                         flags=lib.TAS_CTL_FL_RESET if reset else 0)
        self.app.flows.pop(self.id, None)


class TasApp:
    def __init__(self, instance="tas0", run_dir="/run/tas"):
        err = ffi.new("char[256]")
        path = os.path.join(run_dir, f"{instance}.sock")
        self.handle = lib.tas_app_attach(path.encode(), err, 256)
        if self.handle == ffi.NULL:
            raise TasError(errno.ECONNREFUSED, ffi.string(err).decode())
        # The whole segment, read-write (tests and tools look at it; payload
        # goes through the C core, never through this view).
        self.mem = memoryview(ffi.buffer(lib.tas_app_base(self.handle),
                                         lib.tas_app_size(self.handle))).cast("B")
        self.flows = {}
        self.early = {}          # flow id -> [rx bytes, fin] seen before accept
        self.newconns = 0
        self.listener_ctx = {}   # listener id -> context index
        self._arx = ffi.new("struct tas_arx[64]")
        self._ev = ffi.new("struct tas_ctl_msg *")

    def request(self, mtype, **fields):
        m = ffi.new("struct tas_ctl_msg *")
        m.type = mtype
        for k, v in fields.items():
            setattr(m, k, v)
        status = lib.tas_app_request(self.handle, m)
        return status, m

    def create_context(self):
        """A new context (index): flows opened on it use its own queues."""
        return _check(lib.tas_app_ctx_create(self.handle), "create a context")

    def listen(self, port, backlog=128, ctx=0, reuseaddr=True):
        """Accepted connections belong to the listener's context.
        reuseaddr: as SO_REUSEADDR (which most servers set): connections of
        an earlier listener that had it, still closing on the port, do not
        refuse this one."""
        st, m = self.request(lib.TAS_CTL_LISTEN, local_port=port, backlog=backlog, ctx=ctx,
                             flags=lib.TAS_CTL_FL_REUSEADDR if reuseaddr else 0)
        _check(st, f"listen on port {port}")
        self.listener_ctx[m.listener_id] = ctx
        return m.listener_id

    def accept(self, listener_id, block=True):
        while True:
            st, m = self.request(lib.TAS_CTL_ACCEPT, listener_id=listener_id)
            if st != -errno.EAGAIN:
                _check(st, "accept")
                return self._new_flow(m, self.listener_ctx[listener_id])
            if not block:
                return None
            self.newconns = 0
            while self.newconns == 0:
                self.wait()

    def connect(self, ip, port, ctx=0):
        st, m = self.request(lib.TAS_CTL_CONNECT, remote_ip=int(ipaddress.IPv4Address(ip)),
                             remote_port=port, ctx=ctx)
        _check(st, f"connect to {ip}:{port}")
        return self._new_flow(m, ctx)

    def close_listener(self, listener_id):
        _check(self.request(lib.TAS_CTL_LISTEN_CLOSE, listener_id=listener_id)[0], "close")

    def _new_flow(self, m, ctx):
        f = Flow(self, m, ctx)
        self.flows[f.id] = f
        rx, fin = self.early.pop(f.id, (0, False))
        lib.tas_rx_arrived(f.rx, rx)
        f.rx_fin = fin
        return f

    def poll(self):
        """Apply pending notifications and control events; returns a count."""
        n = 0
        for ctx in range(lib.tas_app_ctx_count(self.handle)):
            n += self._apply(lib.tas_app_poll_ctx(self.handle, ctx, self._arx, 64))
        while lib.tas_app_event(self.handle, self._ev):
            ev = self._ev
            if ev.type == lib.TAS_CTL_NEWCONN:
                self.newconns += 1
            elif ev.type == lib.TAS_CTL_CONN_CLOSED and ev.flow_id in self.flows:
                self.flows[ev.flow_id].reset = True
            n += 1
        return n

    def _apply(self, n):
        """Apply n fast-path notifications from self._arx."""
        for i in range(n):
            e = self._arx[i]
            f = self.flows.get(e.flow_id)
            fin = bool(e.flags & lib.TAS_ARX_FL_RXFIN)
            if f is None:        # data for a connection not accepted yet
                rx, was_fin = self.early.get(e.flow_id, (0, False))
                self.early[e.flow_id] = (rx + e.rx_bump, was_fin or fin)
                continue
            lib.tas_rx_arrived(f.rx, e.rx_bump)
            f.tx.free += e.tx_bump
            f.rx_fin = f.rx_fin or fin
        return n

    def wait(self, timeout_ms=100):
        if self.poll() == 0:
            lib.tas_app_rx_before_sleep(self.handle)   # holds must not stall the window
            lib.tas_app_wait_all(self.handle, timeout_ms)
            self.poll()

    def close(self):
        if self.handle is not None:
            self.mem.release()
            lib.tas_app_detach(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
