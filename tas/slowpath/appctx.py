"""An application's contexts, in its segment.

A context is a descriptor page (struct tas_ctx_shm) followed by two
rte_rings: notifications to the app (struct tas_arx) and commands from it
(struct tas_atx).  Each has its own wake-up eventfd and is registered with
the fast path, which assigns it a queue (and so a core).  Context 0 sits at
a fixed place after the segment header; more come from the segment's heap
when an app asks (TAS_CTL_CTX_CREATE), one per thread that wants its own.
"""
import os

from tas.slowpath.appmem import PAGE

CTX_RING_ENTRIES = 4096


def _pages(n):
    return -(-n // PAGE) * PAGE


def context_bytes(lib):
    """Segment bytes one context takes: descriptor page and both rings."""
    return (PAGE + _pages(lib.tas_ring_memsize(32, CTX_RING_ENTRIES)) +
            _pages(lib.tas_ring_memsize(16, CTX_RING_ENTRIES)))


class Context:
    def __init__(self, index, fp_id, off, evfd):
        self.index, self.fp_id, self.off, self.evfd = index, fp_id, off, evfd


def add_context(fp, app, off):
    """Lay out a context at segment offset `off` and register it with the
    fast path.  Returns the Context, or None if the fast path has no slot."""
    lib, ffi, seg = fp.lib, fp.ffi, app.segment
    index = len(app.ctxs)
    rxq_off = off + PAGE
    txq_off = rxq_off + _pages(lib.tas_ring_memsize(32, CTX_RING_ENTRIES))
    lib.tas_ring_init(seg.ptr(rxq_off, "void *"), f"a{app.id}c{index}rx".encode(),
                      CTX_RING_ENTRIES, 0)
    lib.tas_ring_init(seg.ptr(txq_off, "void *"), f"a{app.id}c{index}tx".encode(),
                      CTX_RING_ENTRIES, 1)
    desc = seg.ptr(off, "struct tas_ctx_shm *")
    ffi.memmove(desc, b"\0" * ffi.sizeof(desc[0]), ffi.sizeof(desc[0]))  # NVM: old bytes
    evfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    fp_id = lib.tas_fp_ctx_add(fp.handle, app.id, seg.ptr(rxq_off, "void *"),
                               seg.ptr(txq_off, "void *"),
                               ffi.addressof(desc, "app_sleeping"), evfd)
    if fp_id < 0:
        os.close(evfd)
        return None
    desc.id, desc.queue = fp_id, lib.tas_fp_ctx_queue(fp.handle, fp_id)
    desc.rxq_off, desc.txq_off = rxq_off, txq_off
    hdr = seg.ptr(0, "struct tas_seg_hdr *")
    hdr.ctx_off[index] = off
    hdr.nctx = index + 1
    ctx = Context(index, fp_id, off, evfd)
    app.ctxs.append(ctx)
    return ctx


def mark_awake(app):
    """Nobody waits on a gone app's eventfds: tell the fast path not to write
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
        os.close(ctx.evfd)
    app.ctxs = []
