/*
 * zIO explicit API for IO stacks (architecture contract 2).
 *
 * libtas and libstrata receive and emit data without going through libc, so
 * libzio cannot learn their buffers by interposition alone.  They call these
 * functions instead.  Each shim resolves them with dlsym() at startup, so it
 * still works when libzio is not preloaded: use zio_api_lookup() below.
 *
 * Semantics (dissertation 4.2.2, "zIO+IO"):
 *  - zio_register_original(): the stack has just placed IO data at
 *    [addr, addr+len).  Copies out of it may now be elided.  With
 *    ZIO_ORIG_NOPROTECT (implied by ZIO_ORIG_NVM) the range is stack-private
 *    and is not write-protected: the stack promises to call zio_release()
 *    before it overwrites or frees the range.
 *  - zio_resolve(): is [addr, addr+len) (or part of it) an intermediate?
 *    Fills `out` with iovecs that together hold exactly the bytes of the
 *    range, with intermediate parts replaced by their originals.  Returns the
 *    number of iovecs (1 and out[0].iov_base == addr: nothing to substitute),
 *    or -1 with errno = E2BIG if more than `max` pieces are needed.  The
 *    originals stay valid until the stack next calls zio_release() on them or
 *    the application overwrites them.
 *  - zio_release(): the stack is about to overwrite or free [addr, addr+len):
 *    every intermediate that depends on it is filled first, and any
 *    intermediate pages inside the range are materialised.  Returns 0.
 *    Works in whole pages: the first and last page of the range are
 *    released whole.
 *  - zio_release_if_unshared(): the same release, but only when no
 *    intermediate depends on any byte of the range's pages: returns 0 when
 *    none does (the range is then left exactly as zio_release() leaves it),
 *    1 when some does (nothing changes, nothing is filled), -1 with
 *    errno = EINVAL for a NULL address with a length or a range that wraps.
 *    Costs no lock when nothing is tracked near the range; dependents are
 *    looked up in an index of sources (no walk over all tracked memory).  A
 *    stack holds busy ranges (its receive window shrinks) and calls
 *    zio_release() when it must have them back.
 *  - zio_copy_continued(): memcpy(dst, src, n) for a stack copying a
 *    received stream out piece by piece, where the `prior` bytes before dst
 *    were copied by earlier calls from the `prior` bytes before src.  Whole
 *    pages the pieces fill together may then be elided even when no single
 *    piece covers one, as long as the earlier bytes still equal their source
 *    (checked) and the source is a registered original.  The input call (read,
 *    recv) that runs this copy records no input of its own.  Returns dst.
 *
 * Originals registered with ZIO_ORIG_NOPROTECT may be registered again after
 * they were released (a receive ring, once per lap): registration first
 * releases whatever the range still was, so a stale registration never
 * survives new data.
 */
#ifndef ZIO_API_H
#define ZIO_API_H

#include <stddef.h>
#include <sys/uio.h>

#define ZIO_ORIG_NVM       0x1u   /* original lives in NVM (implies NOPROTECT) */
#define ZIO_ORIG_NOPROTECT 0x2u   /* stack-private: caller runs zio_release() */

#ifdef __cplusplus
extern "C" {
#endif

int zio_register_original(void *addr, size_t len, unsigned flags);
int zio_resolve(const void *addr, size_t len, struct iovec *out, int max);
int zio_release(void *addr, size_t len);
int zio_release_if_unshared(void *addr, size_t len);
void *zio_copy_continued(void *dst, const void *src, size_t n, size_t prior);

#ifdef __cplusplus
}
#endif

typedef int (*zio_register_original_fn)(void *, size_t, unsigned);
typedef int (*zio_resolve_fn)(const void *, size_t, struct iovec *, int);
typedef int (*zio_release_fn)(void *, size_t);
typedef int (*zio_release_if_unshared_fn)(void *, size_t);
typedef void *(*zio_copy_continued_fn)(void *, const void *, size_t, size_t);

struct zio_api {
    zio_register_original_fn register_original;
    zio_resolve_fn resolve;
    zio_release_fn release;
    zio_release_if_unshared_fn release_if_unshared;
    zio_copy_continued_fn copy_continued;
};

#ifdef ZIO_API_LOOKUP
#include <dlfcn.h>
/* Fill `api` from whatever libzio is loaded; all NULL when none is.
 * Returns 1 when the whole API is available. */
static inline int zio_api_lookup(struct zio_api *api)
{
    api->register_original = (zio_register_original_fn)dlsym(RTLD_DEFAULT, "zio_register_original");
    api->resolve = (zio_resolve_fn)dlsym(RTLD_DEFAULT, "zio_resolve");
    api->release = (zio_release_fn)dlsym(RTLD_DEFAULT, "zio_release");
    api->release_if_unshared =
        (zio_release_if_unshared_fn)dlsym(RTLD_DEFAULT, "zio_release_if_unshared");
    api->copy_continued = (zio_copy_continued_fn)dlsym(RTLD_DEFAULT, "zio_copy_continued");
    return api->register_original && api->resolve && api->release && api->release_if_unshared &&
           api->copy_continued;
}
#endif

#endif
