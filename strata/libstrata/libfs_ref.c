/*
 * ORP on the Strata side (docs/orp-contract.md): the NVM maps a receive
 * stack registered (mappings of this pool's ref area, e.g. libtas's receive
 * rings), and the extents this process's undigested log entries reference.
 *
 * A referenced extent must not change before its entry is digested: the
 * entry's checksum covers it, and recovery stops at the first entry whose
 * extent no longer matches (dropping every later entry of the log).  The
 * owner of the map asks strata_ref_busy before reusing bytes and
 * strata_digest_self when it cannot wait; the log reset at digest clears
 * the outstanding set.
 */
#include "strata_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kb/env.h"

struct nvm_map {
    uintptr_t va;
    size_t len;
    uint64_t pool_off;
};

struct ref_ext {
    uint64_t pool_off, len;
};

static struct nvm_map *maps;
static uint32_t nmaps, maps_cap;
static uint64_t mapped_bytes;
static struct ref_ext *refs;
static uint32_t nrefs, refs_cap;
static uint64_t ref_out; /* bytes referenced by undigested entries */

static int do_map(int fd, uint64_t file_off, const void *va, size_t len)
{
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) != 0)
        return -1;
    if (st.st_dev != G.pool_dev || st.st_ino != G.pool_ino) {
        errno = EXDEV; /* not the pool this process has attached */
        return -1;
    }
    uint64_t lo = G.sb->off_ref + STRATA_REF_TABLE, room = G.sb->ref_bytes - STRATA_REF_TABLE;
    uintptr_t v = (uintptr_t)va;
    if (va == NULL || len == 0 || v + len < v || file_off < lo || len > room || file_off - lo > room - len) {
        errno = EINVAL; /* outside the ref area, or inside its table page */
        return -1;
    }
    for (uint32_t i = 0; i < nmaps; i++)
        if (v < maps[i].va + maps[i].len && maps[i].va < v + len) {
            errno = EINVAL; /* overlaps a registered map */
            return -1;
        }
    if (nmaps == maps_cap && grow_array(&maps, &maps_cap, sizeof(*maps)) != 0)
        return -1;
    maps[nmaps++] = (struct nvm_map){.va = v, .len = len, .pool_off = file_off};
    mapped_bytes += len;
    return 0;
}

int strata_nvm_map(int fd, uint64_t file_off, const void *va, size_t len)
{
    return LOCKED(do_map(fd, file_off, va, len));
}

int strata_nvm_unmap(const void *va)
{
    pthread_mutex_lock(&G.mu);
    int rc = -1;
    for (uint32_t i = 0; i < nmaps; i++)
        if (maps[i].va == (uintptr_t)va) {
            mapped_bytes -= maps[i].len;
            maps[i] = maps[--nmaps];
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&G.mu);
    if (rc != 0)
        errno = EINVAL;
    return rc;
}

size_t nvm_span(const char *p, size_t len, uint64_t *pool_off)
{
    uintptr_t a = (uintptr_t)p, next = a + len;
    for (uint32_t i = 0; i < nmaps; i++) {
        const struct nvm_map *m = &maps[i];
        if (a >= m->va && a < m->va + m->len) {
            *pool_off = m->pool_off + (a - m->va);
            return m->va + m->len - a < len ? m->va + m->len - a : len;
        }
        if (m->va > a && m->va < next)
            next = m->va; /* the plain part ends where a map starts */
    }
    *pool_off = UINT64_MAX;
    return next - a;
}

int refs_reserve(uint32_t n)
{
    while (refs_cap - nrefs < n)
        if (grow_array(&refs, &refs_cap, sizeof(*refs)) != 0)
            return -1;
    return 0;
}

void refs_add(uint64_t pool_off, uint64_t len)
{
    refs[nrefs++] = (struct ref_ext){.pool_off = pool_off, .len = len}; /* room reserved */
    ref_out += len;
}

void refs_clear(void)
{
    nrefs = 0;
    ref_out = 0;
}

/* Outstanding reference bytes that trigger a digest: $STRATA_REF_DIGEST_BYTES
 * ("off": never), else half of what is registered with strata_nvm_map (the
 * receive buffers a pinned reference holds back), else a quarter of the
 * ref area. */
int refs_over_trigger(void)
{
    static int64_t env = -2; /* -2 unread, -1 unset (or bad: default) */
    if (env == -2) {
        const char *s = kb_getenv("STRATA_REF_DIGEST_BYTES");
        char *end = NULL;
        env = s == NULL ? -1 : strcmp(s, "off") == 0 ? INT64_MAX : strtoll(s, &end, 0);
        if (end != NULL && (end == s || *end != 0 || env < 0)) {
            fprintf(stderr, "strata: STRATA_REF_DIGEST_BYTES=%s: not a byte count or \"off\"; "
                            "using the default (half the registered NVM maps)\n", s);
            env = -1;
        }
    }
    uint64_t trigger = env >= 0 ? (uint64_t)env
                       : mapped_bytes ? mapped_bytes / 2
                                      : (G.sb->ref_bytes - STRATA_REF_TABLE) / 4;
    return ref_out > trigger;
}

static int busy(uintptr_t a, uintptr_t b)
{
    for (uint32_t i = 0; i < nmaps; i++) {
        const struct nvm_map *m = &maps[i];
        uintptr_t s = a > m->va ? a : m->va, e = b < m->va + m->len ? b : m->va + m->len;
        if (s >= e)
            continue;
        uint64_t ps = m->pool_off + (s - m->va), pe = ps + (e - s);
        for (uint32_t j = 0; j < nrefs; j++)
            if (refs[j].pool_off < pe && ps < refs[j].pool_off + refs[j].len)
                return 1;
    }
    return 0;
}

int strata_ref_busy(const void *va, size_t len)
{
    pthread_mutex_lock(&G.mu);
    int r = nrefs > 0 && len > 0 && busy((uintptr_t)va, (uintptr_t)va + len);
    pthread_mutex_unlock(&G.mu);
    return r;
}

int strata_digest_kick(void)
{
    pthread_mutex_lock(&G.mu);
    int r = 0;
    if (nrefs > 0 && G.base != NULL && G.slot >= 0) {
        if (bg_enabled())
            bg_kick_refs();
        else
            r = -1;
    }
    pthread_mutex_unlock(&G.mu);
    return r;
}

/* A forked child has no log of its own yet, and the parent's receive stack
 * reuses its buffers without asking the child: the child references nothing. */
static void refs_atfork_child(void)
{
    nmaps = 0;
    mapped_bytes = 0;
    refs_clear();
}

__attribute__((constructor)) static void refs_init(void)
{
    pthread_atfork(NULL, NULL, refs_atfork_child);
}
