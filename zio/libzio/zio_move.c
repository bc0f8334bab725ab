/*
 * Overlapping moves whose source is an intermediate (ORP, H5 ii): Redis's
 * sdsrange() shifts a received bulk value 45 bytes down inside its query
 * buffer.  Once the receive copy was elided, that buffer is unmapped
 * intermediate pages of the stack's receive ring; a plain memmove would
 * fault every page in (and trip the mis-speculation policy).  Instead the
 * destination's whole pages become intermediates of the same original at the
 * shifted offset, and only the fringes are copied, from resolved originals.
 *
 * Why this gives exactly the bytes of a plain memmove:
 *  - a piece's bytes come from an original outside the destination (the
 *    copy_collect() rule), which the move does not change;
 *  - every source byte that the fringes ("gaps") need is resolved before any
 *    piece is installed: intermediate parts to their originals, the rest
 *    (plain memory, originals) read in place.  A piece may not cover a
 *    source byte that is read in place (it would be discarded), so pieces
 *    are kept only where the source under them is intermediate;
 *  - the gaps are copied in memmove order (ascending when moving down,
 *    descending when moving up), each part with memmove, so a gap never
 *    overwrites an in-place source byte another gap still needs.
 * Whatever does not fit these rules (no piece, too many source pieces, a
 * gap source that is an original inside the destination) is a plain move.
 */
#include "zio_internal.h"

#define SEG_IOV 8
#define MAX_SEGS (2 * MAX_PIECES + 1)

/* one destination range of the move, in address order */
struct seg {
    uintptr_t dpos;
    size_t len;
    int piece;                 /* index into the pieces, or -1: copied */
    int niov;
    struct iovec iov[SEG_IOV]; /* the source bytes of a copied range */
};

/* Is [lo,hi) covered by intermediate entries only? */
static int all_intermediate(uintptr_t lo, uintptr_t hi)
{
    for (size_t i = tab_lower(lo); lo < hi; i++) {
        if (i >= zio_tab_n || zio_tab[i].addr > lo || zio_tab[i].kind != ZE_INTER)
            return 0;
        lo = ze_end(&zio_tab[i]);
    }
    return 1;
}

/* Drop the pieces whose destination pages hold source bytes that are not
 * intermediate: the gaps read those in place. */
static int keep_safe_pieces(uintptr_t s, size_t n, struct piece *pc, int np)
{
    int kept = 0;
    for (int k = 0; k < np; k++) {
        uintptr_t a = pc[k].lo > s ? pc[k].lo : s;
        uintptr_t b = pc[k].hi < s + n ? pc[k].hi : s + n;
        if (a < b && !all_intermediate(a, b))
            continue;
        pc[kept++] = pc[k];
    }
    return kept;
}

/* Split [d,d+n) into pieces and copied ranges; resolve the copied ranges'
 * sources.  Returns the number of segments, or -1 for a plain move. */
static int plan(uintptr_t d, uintptr_t s, size_t n, const struct piece *pc, int np,
                struct seg *sg)
{
    int ns = 0;
    uintptr_t pos = d;
    for (int k = 0; k <= np; k++) {
        uintptr_t stop = k < np ? pc[k].lo : d + n;
        if (stop > pos) {
            struct seg *g = &sg[ns++];
            *g = (struct seg){ .dpos = pos, .len = stop - pos, .piece = -1 };
            g->niov = track_resolve(pos - d + s, g->len, g->iov, SEG_IOV, NULL);
            if (g->niov < 0)
                return -1;
            uintptr_t at = pos - d + s;   /* where the bytes are in place */
            for (int i = 0; i < g->niov; i++) {
                uintptr_t b = (uintptr_t)g->iov[i].iov_base;
                if (b != at && b < d + n && d < b + g->iov[i].iov_len)
                    return -1;   /* an original that this move overwrites */
                at += g->iov[i].iov_len;
            }
        }
        if (k < np) {
            sg[ns++] = (struct seg){ .dpos = pc[k].lo, .len = pc[k].hi - pc[k].lo, .piece = k };
            pos = pc[k].hi;
        }
    }
    return ns;
}

static void copy_seg(const struct seg *g, int down)
{
    uintptr_t at = g->dpos;
    size_t off[SEG_IOV];
    for (int i = 0; i < g->niov; i++) {
        off[i] = at - g->dpos;
        at += g->iov[i].iov_len;
    }
    for (int j = 0; j < g->niov; j++) {
        int i = down ? j : g->niov - 1 - j;
        zio_plain_move((void *)(g->dpos + off[i]), g->iov[i].iov_base, g->iov[i].iov_len);
    }
}

int zio_move_repoint(uintptr_t d, uintptr_t s, size_t n)
{
    if (zio_mode != ZIO_ELIDE || __atomic_load_n(&zio_inter_n, __ATOMIC_RELAXED) == 0 ||
        !tab_overlaps(s, s + n))
        return 0;
    struct piece pc[MAX_PIECES];
    struct seg sg[MAX_SEGS];
    void *frees[GC_FREE_BATCH];
    size_t nf = 0;
    zio_in_lib++;
    pthread_mutex_lock(&zio_lock);
    int np = keep_safe_pieces(s, n, pc, copy_collect(d, s, n, pc));
    int ns = np > 0 ? plan(d, s, n, pc, np, sg) : -1;
    int ok = 0;
    for (int k = 0; k < ns; k++) {
        struct seg *g = &sg[k];
        if (g->piece < 0)
            continue;
        struct piece *p = &pc[g->piece];
        uintptr_t src = p->src;
        if (copy_elide_piece(p, frees, &nf) == 0) {
            ok++;
            continue;
        }
        /* not elided: copy it from the original like a gap */
        g->piece = -1;
        g->niov = 1;
        g->iov[0] = (struct iovec){ (void *)src, g->len };
    }
    size_t gap_bytes = 0;
    for (int k = 0; k < ns; k++) {
        if (sg[k].piece >= 0)
            continue;
        /* intermediate pages under the gaps are filled now (no fault when
         * the gap is written), originals there released, idle pages
         * there mapped (zio_reg.c) */
        track_fill_range(sg[k].dpos, sg[k].dpos + sg[k].len);
        reg_prepare_write(pg_floor(sg[k].dpos), pg_ceil(sg[k].dpos + sg[k].len));
        gap_bytes += sg[k].len;
    }
    if (ns > 0 && zio_tab_n > zio_cfg.gc_max)
        nf += gc_run(0, frees + nf, GC_FREE_BATCH - nf);
    pthread_mutex_unlock(&zio_lock);
    zio_in_lib--;
    if (ns < 0)
        return 0;   /* nothing changed: a plain move */
    /* Once a piece was tried its destination's intermediates are gone, so
     * the move completes from the plan even if no piece could be installed */
    int down = d < s;
    for (int j = 0; j < ns; j++) {
        const struct seg *g = &sg[down ? j : ns - 1 - j];
        if (g->piece < 0)
            copy_seg(g, down);
    }
    gc_free_later(frees, nf);   /* after the copies: they may read such memory */
    if (ok) {
        ctr_add(C_MOVES_REPOINTED, 1);
        ctr_add(C_COPIES_ELIDED, 1);
        ctr_add(C_FRINGE_BYTES, gap_bytes);
    } else {
        ctr_add(C_COPIES_PLAIN, 1);
        ctr_add(C_BYTES_PLAIN_LARGE, n);
    }
    return 1;
}
