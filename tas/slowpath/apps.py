"""Application registration and control messages (the slow-path side of libtas).

An application connects to the daemon's SOCK_SEQPACKET socket and sends
TAS_CTL_REGISTER.  The daemon creates the app's private segment (header,
context queues, payload-buffer heap), registers the context with the fast
path, and replies with file descriptors: the segment, the read-only info
page, the app's wake-up eventfd and the eventfd of every fast-path core
(core scaling moves the context's queue between cores).  Later messages are listen/accept/connect/close requests;
the daemon answers and also sends events (new connection, connection closed).
"""
import errno
import os
import socket

from tas.slowpath.appctx import add_context, context_bytes, mark_awake, remove_contexts
from tas.slowpath.appmem import PAGE, Allocator, Segment, backing_for


class App:
    def __init__(self, app_id, sock, server):
        self.id, self.sock, self.server = app_id, sock, server
        self.segment = None
        self.alloc = None
        self.ctxs = []          # appctx.Context, by the app's context index
        self.conns = set()
        self.listeners = set()
        self.gone = False       # registration socket closed


class AppServer:
    def __init__(self, cfg, fp, stats, tcp):
        self.cfg, self.fp, self.stats, self.tcp = cfg, fp, stats, tcp
        self.ffi, self.lib = fp.ffi, fp.lib
        self.path = os.path.join(cfg.tas.run_dir, f"{cfg.tas.instance}.sock")
        if os.path.exists(self.path):
            os.unlink(self.path)  # stale: the instance lock is ours
        self.listen_sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listen_sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.listen_sock.listen(64)
        self.listen_sock.setblocking(False)
        self.apps = {}          # fd -> App
        self.lingering = set()  # gone, segment kept for closed connections
        self.next_id = 1
        self.backing = backing_for(cfg)
        self.msg_size = self.ffi.sizeof("struct tas_ctl_msg")

    def fds(self):
        return [self.listen_sock.fileno(), *self.apps]

    def readable(self, fd):
        if fd == self.listen_sock.fileno():
            try:
                sock, _ = self.listen_sock.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.apps[sock.fileno()] = App(self.next_id, sock, self)
            self.next_id += 1
            return
        app = self.apps.get(fd)
        if app is None:
            return
        try:
            data = app.sock.recv(self.msg_size)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if len(data) != self.msg_size:
            self.app_gone(app)
            return
        self.request(app, self.ffi.from_buffer("struct tas_ctl_msg *", data))

    # ---- messages ----------------------------------------------------------

    def _msg(self, mtype, **fields):
        m = self.ffi.new("struct tas_ctl_msg *")
        m.type = mtype
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    def _send(self, app, msg, fds=()):
        if app.gone:
            return
        data = bytes(self.ffi.buffer(msg))
        try:
            if fds:
                socket.send_fds(app.sock, [data], list(fds))
            else:
                app.sock.send(data)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            self.stats.add("app_ctl_send_failures")

    def status(self, app, req, status, **fields):
        self._send(app, self._msg(self.lib.TAS_CTL_STATUS, status=status, req_id=req.req_id,
                                  **fields))

    def send_opened(self, app, conn, req_id, status=0):
        m = self._msg(self.lib.TAS_CTL_CONN_OPENED, status=status, req_id=req_id)
        if status == 0:
            f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
            m.flow_id = conn.flow_id
            m.local_ip = f.local_ip
            m.remote_ip = f.peer_ip
            m.local_port, m.remote_port = f.local_port, f.peer_port
            m.rx_off, m.rx_size = conn.rx_off, f.rx_size
            m.tx_off, m.tx_size = conn.tx_off, f.tx_size
        self._send(app, m)

    def send_event(self, app, kind, **fields):
        mtype = {"NEWCONN": self.lib.TAS_CTL_NEWCONN,
                 "CONN_CLOSED": self.lib.TAS_CTL_CONN_CLOSED}[kind]
        self._send(app, self._msg(mtype, **fields))

    def request(self, app, req):
        lib = self.lib
        t = req.type
        if t == lib.TAS_CTL_REGISTER:
            self.register(app, req)
        elif app.segment is None:
            self.status(app, req, -errno.EPERM)
        elif t in (lib.TAS_CTL_LISTEN, lib.TAS_CTL_CONNECT) and self.fp_ctx(app, req) is None:
            self.stats.add("app_bad_requests")
            if t == lib.TAS_CTL_CONNECT:
                self.send_opened(app, None, req.req_id, -errno.EINVAL)
            else:
                self.status(app, req, -errno.EINVAL)
        elif t == lib.TAS_CTL_CTX_CREATE:
            self.create_context(app, req)
        elif t == lib.TAS_CTL_LISTEN:
            st, lid = self.tcp.listen(app, self.fp_ctx(app, req), req.local_port, req.backlog,
                                      shared=bool(req.flags & lib.TAS_CTL_FL_SHARED))
            self.status(app, req, st, listener_id=lid, local_port=req.local_port)
        elif t == lib.TAS_CTL_ACCEPT:
            st, conn = self.tcp.accept(app, req.listener_id)
            if conn is None:
                self.status(app, req, st)
            else:
                self.send_opened(app, conn, req.req_id)
        elif t == lib.TAS_CTL_CONNECT:
            st = self.tcp.connect(app, self.fp_ctx(app, req), req.remote_ip.to_bytes(4, "big"),
                                  req.remote_port, req.req_id)
            if st != 0:
                self.send_opened(app, None, req.req_id, st)
        elif t == lib.TAS_CTL_CLOSE:
            self.status(app, req, self.tcp.close(app, req.flow_id,
                                                 bool(req.flags & lib.TAS_CTL_FL_RESET)))
        elif t == lib.TAS_CTL_LISTEN_CLOSE:
            self.status(app, req, self.tcp.listen_close(app, req.listener_id))
        else:
            self.stats.add("app_bad_requests")
            self.status(app, req, -errno.EINVAL)

    # ---- registration ------------------------------------------------------

    def register(self, app, req):
        lib, ffi = self.lib, self.ffi
        if app.segment is not None:
            self.status(app, req, -errno.EALREADY)
            return
        if req.backlog != lib.TAS_SHM_VERSION:
            self.status(app, req, -errno.EPROTO)   # stale libtas: refuse clearly
            return
        size = self.cfg.buffers.app_segment
        app.segment = Segment(self.backing, f"tas-{self.cfg.tas.instance}-app{app.id}", size, ffi)
        hdr = app.segment.ptr(0, "struct tas_seg_hdr *")
        hdr.magic, hdr.version = lib.TAS_SHM_MAGIC, lib.TAS_SHM_VERSION
        hdr.seg_size, hdr.app_id = size, app.id
        ctx = add_context(self.fp, app, PAGE)     # context 0, right after the header
        if ctx is None:
            app.segment.close()
            app.segment = None
            self.status(app, req, -errno.EMFILE)
            return
        app.alloc = Allocator(PAGE + context_bytes(lib), size)
        reply = self._msg(lib.TAS_CTL_STATUS, status=0, req_id=req.req_id, ctx=0,
                          opaque=size, rx_off=ctx.off)
        # Every core's wake-up eventfd: with core scaling, any of them may
        # come to serve this context's queue (tas_info.queue_owner).
        wake_fds = [lib.tas_fp_core_wake_fd(self.fp.handle, i) for i in range(self.fp.ncores)]
        self._send(app, reply, [app.segment.fd, lib.tas_fp_info_fd(self.fp.handle), ctx.evfd]
                   + wake_fds)
        self.stats.add("apps_registered")
        self.stats.set("apps_active", sum(1 for a in self.apps.values() if a.segment))

    def create_context(self, app, req):
        """Another context for the app (TAS_CTL_CTX_CREATE): from its heap."""
        if len(app.ctxs) >= self.lib.TAS_MAX_CTX:
            self.status(app, req, -errno.EMFILE)
            return
        off = app.alloc.alloc(context_bytes(self.lib))
        if off is None:
            self.status(app, req, -errno.ENOMEM)
            return
        ctx = add_context(self.fp, app, off)
        if ctx is None:
            app.alloc.release(off)
            self.status(app, req, -errno.EMFILE)
            return
        reply = self._msg(self.lib.TAS_CTL_STATUS, status=0, req_id=req.req_id,
                          ctx=ctx.index, rx_off=ctx.off)
        self._send(app, reply, [ctx.evfd])
        self.stats.add("app_contexts_created")

    def fp_ctx(self, app, req):
        """The fast-path context a request names (tas_ctl_msg.ctx), or None."""
        return app.ctxs[req.ctx].fp_id if req.ctx < len(app.ctxs) else None

    def app_gone(self, app):
        self.apps.pop(app.sock.fileno(), None)
        app.sock.close()
        app.gone = True
        if app.segment is not None and self.tcp.app_gone(app) > 0:
            # The fast path keeps sending the closed connections' data from
            # the segment (and draining the app's TX queue, which may still
            # hold their last bytes and FIN), so the context stays registered
            # too: its index must not go to another app while these flows
            # may still notify it.  Nobody waits on the eventfd any more.
            mark_awake(app)
            self.lingering.add(app)
            self.stats.set("apps_lingering", len(self.lingering))
        else:
            self.release(app)
        self.stats.set("apps_active", sum(1 for a in self.apps.values() if a.segment))

    def release(self, app):
        """Free a gone app's contexts, segment and eventfds."""
        self.lingering.discard(app)
        remove_contexts(self.fp, app)
        if app.segment is not None:
            app.segment.close()
        app.segment = app.alloc = None
        self.stats.set("apps_lingering", len(self.lingering))

    def close(self):
        for app in list(self.apps.values()):
            self.app_gone(app)
        for app in list(self.lingering):     # the daemon stops: reset them
            self.tcp.reset_all(app)
            self.release(app)
        self.listen_sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
