"""Application registration and control messages (the slow-path side of libtas).

An application connects to the daemon's SOCK_SEQPACKET socket and sends
TAS_CTL_REGISTER.  The daemon creates the app's private segment (header,
context queues, payload-buffer heap), registers the context with the fast
path, and replies with file descriptors: the segment, the read-only info
page, the app's wake-up socket and the wake-up socket of every fast-path
core (core scaling moves the context's queue between cores).  Later messages
are listen/accept/connect/close requests; the daemon answers and also sends
events (new connection, connection closed).

Apps are untrusted.  Each connection's peer credentials (SO_PEERCRED) are
taken at accept and charged against per-uid caps (quota.py); a connection
that does not register within limits.register_timeout_ms is dropped; an app
whose context the fast path caught with an impossible queue index is
detached (its connections reset, its segment released).
"""
import collections
import errno
import os
import socket
import struct
import time
import traceback

from tas.slowpath.appctx import (add_context, context_bytes, mark_awake, remove_contexts,
                                 wait_commands_taken)
from tas.slowpath.appmem import PAGE, Allocator, backing_for
from tas.slowpath.arena import proc_start
from tas.slowpath.fork_conns import ForkedConns
from tas.slowpath.sockfile import bind_unix_socket

ACCEPT_BURST = 64


def peer_credentials(sock):
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               struct.calcsize("3i")))


class App:
    def __init__(self, app_id, sock, server, cred=(0, 0, 0)):
        self.id, self.sock, self.server = app_id, sock, server
        self.pid, self.uid, self.gid = cred
        self.accepted = time.monotonic()
        self.segment = None
        self.hdr = None         # the segment's struct tas_seg_hdr (ctl_sent)
        self.alloc = None
        self.ctxs = []          # appctx.Context, by the app's context index
        self.connector = None   # its connects' pool in the fast path (connector.py)
        self.conns = set()
        self.listeners = set()
        self.buffer_limits_said = set()   # keys the daemon logged it reached (tcp.py)
        self.gone = False       # registration socket closed
        self.outq = collections.deque()  # (bytes, fds) the socket had no room for yet
        # Start time of the connecting process (pid from SO_PEERCRED): with
        # the pid, the owner of the app's NVM slice in the arena's table.
        self.start = proc_start(self.pid)


class AppServer:
    def __init__(self, cfg, fp, stats, tcp, quota, watch, unwatch):
        """watch(fd, handler) / unwatch(fd): the slow path's event loop."""
        self.cfg, self.fp, self.stats, self.tcp, self.quota = cfg, fp, stats, tcp, quota
        self.watch, self.unwatch = watch, unwatch
        self.ffi, self.lib = fp.ffi, fp.lib
        self.path = os.path.join(cfg.tas.run_dir, f"{cfg.tas.instance}.sock")
        self.listen_sock = bind_unix_socket(self.path, socket.SOCK_SEQPACKET,
                                            cfg.tas.socket_mode, cfg.tas.socket_group)
        self.listen_sock.listen(256)
        self.listen_sock.setblocking(False)
        self.apps = {}          # fd -> App
        self.unregistered = {}  # fd -> App, in accept order (register deadline)
        self.lingering = set()  # gone, segment kept for closed connections
        self.next_id = 1
        self.backing = backing_for(cfg, self.ffi, self.lib, stats)
        self.stopping = False   # daemon stop: apps keep their slices (next daemon reconciles)
        self.msg_size = self.ffi.sizeof("struct tas_ctl_msg")
        self.register_timeout = cfg.limits.register_timeout_ms / 1000
        self.bad_seen = self.lib.tas_fp_bad_ctx_events(fp.handle)
        self.forked = ForkedConns(tcp, stats, watch, unwatch)
        watch(self.listen_sock.fileno(), self.accept_ready)

    def accept_ready(self, _fd=None):
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = self.listen_sock.accept()
            except BlockingIOError:
                return
            except OSError as e:     # EMFILE/ENFILE: count, retry on the next event
                self.stats.add("app_accept_errors")
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                return
            cred = peer_credentials(sock)
            if not self.quota.take(cred[1], "connections"):
                sock.close()
                self.stats.add("app_conns_refused")
                continue
            sock.setblocking(False)
            app = App(self.next_id, sock, self, cred)
            self.next_id += 1
            self.apps[sock.fileno()] = app
            self.unregistered[sock.fileno()] = app
            self.watch(sock.fileno(), self.readable)
            self.stats.add("app_conns_accepted")

    def tick(self):
        """Drop connections that never registered; detach apps the fast path
        caught misbehaving; give back NVM slices whose owners are gone and
        recovered."""
        arena = getattr(self.backing, "arena", None)
        if arena is not None:
            arena.reclaim()
        deadline = time.monotonic() - self.register_timeout
        for app in list(self.unregistered.values()):
            if app.accepted > deadline:
                break            # accept order: the rest are younger
            self.stats.add("app_register_timeouts")
            self.app_gone(app)
        seen = self.lib.tas_fp_bad_ctx_events(self.fp.handle)
        if seen != self.bad_seen:
            self.bad_seen = seen
            for app in list(self.apps.values()) + list(self.lingering):
                if any(self.lib.tas_fp_ctx_bad(self.fp.handle, c.fp_id) for c in app.ctxs):
                    self.detach_bad(app)

    def readable(self, fd):
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
        req = self.ffi.from_buffer("struct tas_ctl_msg *", data)
        try:
            self.request(app, req)
        except Exception:
            # a bug in handling one request must not leave the app waiting
            # for a reply forever: count it, report it, answer EIO
            self.stats.add("app_request_errors")
            traceback.print_exc()
            self.fail_request(app, req)

    def fail_request(self, app, req):
        lib = self.lib
        if req.type == lib.TAS_CTL_CONNECT:
            self.send_opened(app, None, req.req_id, -errno.EIO)
        elif not (req.type == lib.TAS_CTL_CLOSE and req.flags & lib.TAS_CTL_FL_NOREPLY):
            self.status(app, req, -errno.EIO)

    # ---- messages ----------------------------------------------------------

    def _msg(self, mtype, **fields):
        m = self.ffi.new("struct tas_ctl_msg *")
        m.type = mtype
        for k, v in fields.items():
            setattr(m, k, v)
        return m

    def _send(self, app, msg, fds=()):
        """Send in order, never drop: what the app's socket has no room for
        waits in app.outq until it is writable (a lost CONN_OPENED or NEWCONN
        would hang the app's connect or accept)."""
        if app.gone:
            return
        data = bytes(self.ffi.buffer(msg))
        if not app.outq:
            try:
                self._send_now(app, data, fds)
                self._count_sent(app)
                return
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self.stats.add("app_ctl_send_failures")  # the app is gone: readable() sees it
                return
        # Our own copies of the fds: their owners may close them before the flush.
        app.outq.append((data, [os.dup(fd) for fd in fds]))
        self.stats.add("app_ctl_deferred")

    @staticmethod
    def _count_sent(app):
        """After the send: libtas polls its socket only once this moved."""
        if app.hdr is not None and app.segment is not None:
            app.hdr.ctl_sent = (app.hdr.ctl_sent + 1) & 0xFFFFFFFF

    @staticmethod
    def _send_now(app, data, fds):
        if fds:
            socket.send_fds(app.sock, [data], list(fds))
        else:
            app.sock.send(data)

    def pending_fds(self):
        """App sockets with deferred control messages (select for writing)."""
        return [fd for fd, app in self.apps.items() if app.outq]

    def writable(self, fd):
        app = self.apps.get(fd)
        while app is not None and app.outq:
            data, fds = app.outq[0]
            try:
                self._send_now(app, data, fds)
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):
                self.stats.add("app_ctl_send_failures")
                self._drop_outq(app)
                return
            app.outq.popleft()
            self._count_sent(app)
            for dup in fds:
                os.close(dup)

    @staticmethod
    def _drop_outq(app):
        while app.outq:
            for dup in app.outq.popleft()[1]:
                os.close(dup)

    def status(self, app, req, status, **fields):
        self._send(app, self._msg(self.lib.TAS_CTL_STATUS, status=status, req_id=req.req_id,
                                  **fields))

    def send_opened(self, app, conn, req_id, status=0):
        m = self._msg(self.lib.TAS_CTL_CONN_OPENED, status=status, req_id=req_id)
        if status == 0:
            self._fill_opened(m, conn)
        self._send(app, m)

    def _fill_opened(self, m, conn):
        f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
        m.flow_id = conn.flow_id
        m.local_ip = f.local_ip
        m.remote_ip = f.peer_ip
        m.local_port, m.remote_port = f.local_port, f.peer_port
        m.rx_off, m.rx_size = conn.rx_off, f.rx_size
        m.tx_off, m.tx_size = conn.tx_off, f.tx_size

    def send_handoff(self, app, conn, listener_id):
        """NEWCONN for a hand-over listener: the connection itself (the
        CONN_OPENED fields), accepted by the app without asking."""
        m = self._msg(self.lib.TAS_CTL_NEWCONN, flags=self.lib.TAS_CTL_FL_HANDOFF,
                      listener_id=listener_id)
        self._fill_opened(m, conn)
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
        elif (t in (lib.TAS_CTL_LISTEN, lib.TAS_CTL_CONNECT, lib.TAS_CTL_CLAIM) and
              self.fp_ctx(app, req) is None):
            self.stats.add("app_bad_requests")
            if t in (lib.TAS_CTL_CONNECT, lib.TAS_CTL_CLAIM):
                self.send_opened(app, None, req.req_id, -errno.EINVAL)
            else:
                self.status(app, req, -errno.EINVAL)
        elif t == lib.TAS_CTL_CTX_CREATE:
            self.create_context(app, req)
        elif t == lib.TAS_CTL_LISTEN:
            st, lid = self.tcp.listen(app, self.fp_ctx(app, req), req.local_port, req.backlog,
                                      shared=bool(req.flags & lib.TAS_CTL_FL_SHARED),
                                      handoff=bool(req.flags & lib.TAS_CTL_FL_HANDOFF),
                                      reuse=bool(req.flags & lib.TAS_CTL_FL_REUSEADDR),
                                      join_key=req.opaque)
            lst = self.tcp.listener_ids.get(lid) if st == 0 else None
            handoff = lst is not None and lst.handoff
            # a hand-over listener's connections may come as TAS_ARX_NEWCONN
            # entries, which leave these out
            more = dict(local_ip=int.from_bytes(self.tcp.my_ip, "big"),
                        rx_size=self.cfg.buffers.rx_buf,
                        tx_size=self.cfg.buffers.tx_buf) if handoff else {}
            self.status(app, req, st, listener_id=lid,
                        local_port=lst.port if lst is not None else req.local_port,
                        rx_off=lst.accept_off if handoff else 0,
                        opaque=lst.join_key if lst is not None else 0, **more)
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
        elif t == lib.TAS_CTL_CLAIM:
            st, conn = self.forked.claim(app, self.fp_ctx(app, req), req.flow_id)
            if conn is None:
                self.send_opened(app, None, req.req_id, st)
            else:
                self.send_opened(app, conn, req.req_id)
        elif t == lib.TAS_CTL_CLOSE and req.flags & lib.TAS_CTL_FL_FORKED:
            pids = (req.opaque & 0xFFFFFFFF, req.opaque >> 32, req.backlog, req.listener_id)
            if self.forked.close(app, req.flow_id, pids) != 0:
                self.stats.add("app_close_unknown_flow")
        elif t == lib.TAS_CTL_CLOSE:
            st = self.tcp.close(app, req.flow_id, bool(req.flags & lib.TAS_CTL_FL_RESET))
            if not req.flags & lib.TAS_CTL_FL_NOREPLY:
                self.status(app, req, st)
            elif st != 0:
                self.stats.add("app_close_unknown_flow")
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
        if not self.quota.take(app.uid, "contexts"):
            self.status(app, req, -errno.EMFILE)
            return
        size = self.cfg.buffers.app_segment
        app.segment = self.backing.segment(app, size, ffi)
        if app.segment is None:
            self.quota.give(app.uid, "contexts")
            self.stats.add("app_segment_failures")
            self.status(app, req, -errno.ENOMEM)      # the NVM arena is full
            return
        hdr = app.segment.ptr(0, "struct tas_seg_hdr *")
        hdr.magic, hdr.version = lib.TAS_SHM_MAGIC, lib.TAS_SHM_VERSION
        hdr.seg_size, hdr.app_id = size, app.id
        app.hdr = hdr
        ctx = add_context(self.fp, app, PAGE)     # context 0, right after the header
        if ctx is None:
            self.quota.give(app.uid, "contexts")
            self.backing.retire(app.segment)
            app.segment = None
            self.status(app, req, -errno.EMFILE)
            return
        self.unregistered.pop(app.sock.fileno(), None)
        app.alloc = Allocator(PAGE + context_bytes(ffi, lib), size)
        seg = app.segment
        reply = self._msg(lib.TAS_CTL_STATUS, status=0, req_id=req.req_id, ctx=0,
                          opaque=size, rx_off=ctx.off,
                          tx_off=seg.seg_off >> lib.TAS_REG_OFF_SHIFT,
                          flags=lib.TAS_REG_FL_NVM if seg.nvm else 0,
                          rx_size=self.cfg.buffers.rx_buf, tx_size=self.cfg.buffers.tx_buf)
        # Every core's wake-up socket: with core scaling, any of them may
        # come to serve this context's queue (tas_info.queue_owner).
        wake_fds = [lib.tas_fp_core_wake_fd(self.fp.handle, i) for i in range(self.fp.ncores)]
        self._send(app, reply, [app.segment.fd, lib.tas_fp_info_fd(self.fp.handle), ctx.evfd]
                   + wake_fds)
        ctx.app_wake.close()     # the app's end is the app's business now
        self.stats.add("apps_registered")
        self.stats.set("apps_active", sum(1 for a in self.apps.values() if a.segment))

    def create_context(self, app, req):
        """Another context for the app (TAS_CTL_CTX_CREATE): from its heap."""
        if len(app.ctxs) >= self.lib.TAS_MAX_CTX or not self.quota.take(app.uid, "contexts"):
            self.status(app, req, -errno.EMFILE)
            return
        off = app.alloc.alloc(context_bytes(self.ffi, self.lib))
        if off is None:
            self.quota.give(app.uid, "contexts")
            self.status(app, req, -errno.ENOMEM)
            return
        ctx = add_context(self.fp, app, off)
        if ctx is None:
            self.quota.give(app.uid, "contexts")
            app.alloc.release(off)
            self.status(app, req, -errno.EMFILE)
            return
        self.tcp.connectors.context_added(app, ctx)
        reply = self._msg(self.lib.TAS_CTL_STATUS, status=0, req_id=req.req_id,
                          ctx=ctx.index, rx_off=ctx.off)
        self._send(app, reply, [ctx.evfd])
        ctx.app_wake.close()
        self.stats.add("app_contexts_created")

    def fp_ctx(self, app, req):
        """The fast-path context a request names (tas_ctl_msg.ctx), or None."""
        return app.ctxs[req.ctx].fp_id if req.ctx < len(app.ctxs) else None

    def _disconnect(self, app):
        """Close the app's control connection (once)."""
        if app.gone:
            return
        fd = app.sock.fileno()
        self.apps.pop(fd, None)
        self.unregistered.pop(fd, None)
        self.unwatch(fd)
        app.sock.close()
        app.gone = True
        self._drop_outq(app)
        self.quota.give(app.uid, "connections")

    def app_gone(self, app):
        self._disconnect(app)
        if app.segment is not None and not wait_commands_taken(self.fp, app):
            self.stats.add("app_gone_commands_pending")
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

    def detach_bad(self, app):
        """The app wrote an impossible queue index: it is cut off at once.
        Its connections are reset (its segment cannot be trusted to finish
        them) and everything it held is released."""
        self.stats.add("apps_detached_bad")
        self._disconnect(app)
        if app.segment is not None:
            for lst in list(app.listeners):
                self.tcp.listen_close(app, lst.id)
            self.tcp.reset_all(app)
        self.release(app)
        self.stats.set("apps_active", sum(1 for a in self.apps.values() if a.segment))

    def release(self, app):
        """Free a gone app's contexts, segment and wake-up sockets."""
        self.lingering.discard(app)
        self.quota.give(app.uid, "contexts", len(app.ctxs))
        remove_contexts(self.fp, app)
        if app.segment is not None and not (self.stopping and app.segment.nvm):
            self.backing.retire(app.segment)
        app.segment = app.alloc = None
        self.stats.set("apps_lingering", len(self.lingering))

    def arena(self):
        """The NVM arena's slices and owners (tasctl arena), or None."""
        a = getattr(self.backing, "arena", None)
        return a.describe() if a is not None else None

    def close(self):
        # Apps still running keep their slices mapped: leave their rows for
        # the next daemon to reconcile rather than quarantining them now.
        self.stopping = True
        for app in list(self.apps.values()):
            self.app_gone(app)
        for app in list(self.lingering):     # the daemon stops: reset them
            self.tcp.reset_all(app)
            self.release(app)
        self.unwatch(self.listen_sock.fileno())
        self.listen_sock.close()
        self.forked.close_all()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.backing.close()
