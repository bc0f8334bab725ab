/*
 * libtas core: the entry points of zIO and Strata that receive-buffer
 * release uses (docs/orp-contract.md).  They are found with dlsym at first
 * use, so the core works with either, both or neither preloaded:
 *  - no libzio: nothing is registered, consumed bytes go back at once;
 *  - libzio without zio_release_if_unshared: zio_release (fills any
 *    dependents) stands in for the try-release, so nothing is held;
 *  - no libstrata: no reference can pin the ring.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "kb/env.h"

static struct orp_api api;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* libzio reads ZIO_THRESHOLD itself; copies below it are never elided, so
 * registering for them would be wasted work. */
static size_t zio_threshold(void)
{
    const char *v = kb_getenv("ZIO_THRESHOLD");
    char *end;
    unsigned long long x = v != NULL && *v ? strtoull(v, &end, 10) : 16384;
    if (v != NULL && *v && *end)
        x = 16384;             /* libzio ignores a malformed value too */
    return x < 4096 ? 4096 : (size_t)x;
}

static void lookup(void)
{
    *(void **)&api.zio_register = dlsym(RTLD_DEFAULT, "zio_register_original");
    *(void **)&api.zio_release = dlsym(RTLD_DEFAULT, "zio_release");
    *(void **)&api.zio_try_release = dlsym(RTLD_DEFAULT, "zio_release_if_unshared");
    *(void **)&api.zio_copy_continued = dlsym(RTLD_DEFAULT, "zio_copy_continued");
    *(void **)&api.strata_busy = dlsym(RTLD_DEFAULT, "strata_ref_busy");
    *(void **)&api.strata_digest = dlsym(RTLD_DEFAULT, "strata_digest_self");
    *(void **)&api.strata_kick = dlsym(RTLD_DEFAULT, "strata_digest_kick");
    if (api.zio_register == NULL || api.zio_release == NULL) {
        /* a partial zIO is no zIO: never register what cannot be released */
        api.zio_register = NULL;
        api.zio_release = NULL;
        api.zio_try_release = NULL;
        api.zio_copy_continued = NULL;
    }
    api.zio_threshold = zio_threshold();
    /* libzio precedes us in the preload order; the next memcpy is libc's */
    *(void **)&api.plain_memcpy = dlsym(RTLD_NEXT, "memcpy");
    if (api.plain_memcpy == NULL)
        api.plain_memcpy = memcpy;
}

const struct orp_api *orp_api(void)
{
    pthread_once(&once, lookup);
    return &api;
}

