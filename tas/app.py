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
the flow buffers in the app's segment exactly as it does for libtas.
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
        self.rx_off, self.rx_size = msg.rx_off, msg.rx_size
        self.tx_off, self.tx_size = msg.tx_off, msg.tx_size
        self.rx_tail = 0          # next byte to read in the RX buffer
        self.rx_ready = 0         # readable bytes
        self.tx_head = 0          # next free byte in the TX buffer
        self.tx_free = msg.tx_size
        self.rx_fin = False
        self.reset = False
        self.closed = False

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
        n = min(max_bytes, self.rx_ready)
        mem = self.app.mem
        start = self.rx_off + self.rx_tail
        first = min(n, self.rx_size - self.rx_tail)
        data = bytes(mem[start:start + first])
        if n > first:
            data += bytes(mem[self.rx_off:self.rx_off + n - first])
        self.rx_tail = (self.rx_tail + n) % self.rx_size
        self.rx_ready -= n
        lib.tas_app_post_ctx(self.app.handle, self.ctx, self.id, n, 0, 0)
        return data

    # -- send ----------------------------------------------------------------
    def send(self, data, block=True):
        """Append as much of data as fits; returns the byte count."""
        while self.tx_free == 0:
            if self.reset:
                raise TasError(errno.ECONNRESET, "connection reset by peer")
            if not block:
                return 0
            self.app.wait()
        n = min(len(data), self.tx_free)
        mem = self.app.mem
        first = min(n, self.tx_size - self.tx_head)
        start = self.tx_off + self.tx_head
        mem[start:start + first] = data[:first]
        if n > first:
            mem[self.tx_off:self.tx_off + n - first] = data[first:n]
        self.tx_head = (self.tx_head + n) % self.tx_size
        self.tx_free -= n
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

    def listen(self, port, backlog=128, ctx=0):
        """Accepted connections belong to the listener's context."""
        st, m = self.request(lib.TAS_CTL_LISTEN, local_port=port, backlog=backlog, ctx=ctx)
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
        f.rx_ready, f.rx_fin = rx, fin
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
            f.rx_ready += e.rx_bump
            f.tx_free += e.tx_bump
            f.rx_fin = f.rx_fin or fin
        return n

    def wait(self, timeout_ms=100):
        if self.poll() == 0:
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
