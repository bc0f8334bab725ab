"""Connects in the fast path (include/tas/synfast.h), the slow path's side.

An app's first connect through the fast path (libtas's TAS_ATX_CONNECT; the
Python API's TAS_CTL_CONNECT never goes there) is left to us, and gives the
app a connector: a listener slot in the fast path with no port, whose
pool of flow buffers (tcp.syn_pool, charged to the app's uid like any
connection's) provisions its later connects, and every context of the app
names it.  From then on libtas's TAS_ATX_CONNECT is answered by the fast
path alone (SYN out, SYN-ACK in, TAS_ARX_OPENED); its record reaches us
through the sweep like a passive connection's (TcpManager._fast_opened).
Connects the fast path leaves to us (no MAC known, pool empty, ...) come
from a ring and are done here as a TAS_CTL_CONNECT would be.

The connector is a Listener with `connector` set, in listener_ids, so the
pool refill, the recycling of closed connections' buffers and the sweep's
records work as for a hand-over listener; it is in no port's group and in
no app's `listeners`.
"""
SLOW_BATCH = 64


class Connectors:
    def __init__(self, tcp, listener_cls):
        self.tcp, self.lib, self.ffi = tcp, tcp.lib, tcp.ffi
        self.fp = tcp.fp
        self.listener_cls = listener_cls
        self._slow = self.ffi.new(f"struct tas_conn_slow[{SLOW_BATCH}]")

    def ensure(self, app):
        """The app's connector, made (and provisioned) at its first connect;
        None if connects stay slow (tcp.connect_pool 0, fast-path table full)."""
        lst = getattr(app, "connector", None)
        if lst is not None or self.tcp.connect_pool <= 0 or app.alloc is None:
            return lst
        tcp = self.tcp
        lst = self.listener_cls(tcp.next_listener_id, app, 0, 0, 0, handoff=True,
                                connector=True)
        lst.fp_slot = self.lib.tas_fp_connector_add(self.fp.handle, lst.id, app.id)
        if lst.fp_slot < 0:
            tcp.syn_stats.add("conn_connector_table_full")
            return None
        tcp.next_listener_id += 1
        tcp.listener_ids[lst.id] = lst
        app.connector = lst
        for ctx in app.ctxs:
            self.lib.tas_fp_ctx_connector(self.fp.handle, ctx.fp_id, lst.fp_slot)
        tcp._refill(lst)
        tcp.syn_stats.add("conn_connectors")
        return lst

    def context_added(self, app, ctx):
        lst = getattr(app, "connector", None)
        if lst is not None and lst.fp_slot >= 0:
            self.lib.tas_fp_ctx_connector(self.fp.handle, ctx.fp_id, lst.fp_slot)

    def remove(self, app):
        """The app is gone: no connect opens in the fast path for it after
        this; those it opened are collected, the pool goes back."""
        lst = getattr(app, "connector", None)
        if lst is None:
            return
        for ctx in app.ctxs:
            self.lib.tas_fp_ctx_connector(self.fp.handle, ctx.fp_id, -1)
        self.tcp._fp_unlisten(lst)
        self.tcp.listener_ids.pop(lst.id, None)
        app.connector = None

    def drain_slow(self, server):
        """Connects the fast path left to us: done as TAS_CTL_CONNECT would
        be, answered with CONN_OPENED.  server: the AppServer (its apps)."""
        by_id = None
        while True:
            n = self.lib.tas_fp_conn_slow(self.fp.handle, self._slow, SLOW_BATCH)
            if n and by_id is None:
                by_id = {a.id: a for a in server.apps.values()}
            for i in range(n):
                r = self._slow[i]
                app = by_id.get(r.app_id)
                if app is None or app.segment is None:
                    continue                # gone meanwhile: nobody waits
                if not any(c.fp_id == r.ctx for c in app.ctxs):
                    self.tcp.syn_stats.add("conn_slow_bad_ctx")
                    continue
                st = self.tcp.connect(app, r.ctx, r.peer_ip.to_bytes(4, "big"), r.peer_port,
                                      r.req_id)
                if st != 0:
                    app.server.send_opened(app, None, r.req_id, st)
                if r.why == self.lib.TAS_CONN_FB_NO_CONNECTOR:
                    self.ensure(app)        # (after its own buffers: a small segment)
            if n < SLOW_BATCH:
                return
