"""An application's contexts, in its segment.

A context is a descriptor page (struct tas_ctx_shm) followed by two queues
(struct tas_ctxq_hdr + entries): notifications to the app (struct tas_arx)
and commands from it (struct tas_atx).  Each has its own wake-up socketpair
(the fast path sends to our end without blocking, the app polls its end;
it cannot make our end block) and is registered with
the fast path, which assigns it a queue (and so a core).  Context 0 sits at
a fixed place after the segment header; more come from the segment's heap
when an app asks (TAS_CTL_CTX_CREATE), one per thread that wants its own.
"""
import socket
import time

from tas.slowpath.appmem import PAGE

# How long a gone app's last commands may take to be read: the fast path
# drains context queues continuously (a hang guard, not a tuning knob).
DRAIN_LIMIT_S = 0.2


def _pages(n):
    return -(-n // PAGE) * PAGE


def _queue_bytes(ffi, lib, entry):
    return _pages(ffi.sizeof("struct tas_ctxq_hdr") + ffi.sizeof(entry) * lib.TAS_CTXQ_ENTRIES)


def context_bytes(ffi, lib):
    """Segment bytes one context takes: descriptor page and both queues."""
    return (PAGE + _queue_bytes(ffi, lib, "struct tas_arx") +
            _queue_bytes(ffi, lib, "struct tas_atx"))


class Context:
    def __init__(self, index, fp_id, off, wake, app_wake, txq_off=0):
        self.index, self.fp_id, self.off = index, fp_id, off
        self.txq_off = txq_off      # ours: the descriptor's copy is the app's to write
        self.wake = wake            # our end of the wake-up socketpair
        self.app_wake = app_wake    # the app's end (closed once passed)

    @property
    def evfd(self):
        """The descriptor the app gets."""
        return self.app_wake.fileno()

    def close(self):
        self.wake.close()
        self.app_wake.close()


def add_context(fp, app, off):
    """Lay out a context at segment offset `off` and register it with the
    fast path.  Returns the Context, or None if the fast path has no slot."""
    lib, ffi, seg = fp.lib, fp.ffi, app.segment
    index = len(app.ctxs)
    rxq_off = off + PAGE
    txq_off = rxq_off + _queue_bytes(ffi, lib, "struct tas_arx")
    hdr_size = ffi.sizeof("struct tas_ctxq_hdr")
    ffi.memmove(seg.ptr(rxq_off), bytes(hdr_size), hdr_size)
    ffi.memmove(seg.ptr(txq_off), bytes(hdr_size), hdr_size)
    desc = seg.ptr(off, "struct tas_ctx_shm *")
    ffi.memmove(desc, b"\0" * ffi.sizeof(desc[0]), ffi.sizeof(desc[0]))  # NVM: old bytes
    wake, app_wake = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    wake.setblocking(False)
    wake.shutdown(socket.SHUT_RD)   # we only send; the app's end only receives
    fp_id = lib.tas_fp_ctx_add(fp.handle, app.id, seg.ptr(rxq_off, "void *"),
                               seg.ptr(txq_off, "void *"),
                               ffi.addressof(desc, "app_sleeping"), wake.fileno())
    if fp_id < 0:
        wake.close()
        app_wake.close()
        return None
    desc.id, desc.queue = fp_id, lib.tas_fp_ctx_queue(fp.handle, fp_id)
    desc.rxq_off, desc.txq_off = rxq_off, txq_off
    hdr = seg.ptr(0, "struct tas_seg_hdr *")
    hdr.ctx_off[index] = off
    hdr.nctx = index + 1
    ctx = Context(index, fp_id, off, wake, app_wake, txq_off)
    app.ctxs.append(ctx)
    return ctx


def wait_commands_taken(fp, app):
    """A gone app's last commands (a close is a flag on its FIN's command,
    TAS_ATX_FL_CLOSED) race its socket's end: wait until the fast path has
    taken and applied everything in its queues, so the flows show it.
    False if the queues did not drain in time."""
    seg, lib = app.segment, fp.lib
    # A queue the fast path caught with an impossible index is not served
    # any more: nothing to wait for there (an app must not stall us).
    hdrs = [seg.ptr(ctx.txq_off, "struct tas_ctxq_hdr *") for ctx in app.ctxs
            if not lib.tas_fp_ctx_bad(fp.handle, ctx.fp_id)]
    deadline = time.monotonic() + DRAIN_LIMIT_S
    while any(0 < (h.prod - h.cons) & 0xFFFFFFFF <= lib.TAS_CTXQ_ENTRIES for h in hdrs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    fp.lib.tas_fp_quiesce(fp.handle)     # taken, and applied by now
    return True


def mark_awake(app):
    """Nobody waits on a gone app's wake-up sockets: tell the fast path not to write
    them (its flows may still be finishing)."""
    for ctx in app.ctxs:
        app.segment.ptr(ctx.off, "struct tas_ctx_shm *").app_sleeping = 0


def remove_contexts(fp, app):
    """Unregister all of the app's contexts; after the quiescence wait no
    fast-path core touches their queues any more."""
    for ctx in app.ctxs:
        fp.lib.tas_fp_ctx_remove(fp.handle, ctx.fp_id)
    if app.ctxs:
        fp.lib.tas_fp_quiesce(fp.handle)
    for ctx in app.ctxs:
        ctx.close()
    app.ctxs = []
