/* Shared helpers of the LD_PRELOAD shim (shim_*.c). */
#ifndef STRATA_SHIM_H
#define STRATA_SHIM_H

/* The shim defines both open and open64 etc.: it must see the plain names. */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>

/* Resolve the next definition of a libc function once (thread-safe enough:
 * every thread computes the same pointer). */
#define REAL(name)                                                     \
    ({                                                                 \
        static __typeof__(&name) real_##name;                          \
        if (real_##name == NULL)                                       \
            real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name);  \
        real_##name;                                                   \
    })

/* Map an application path to a pool path ("/..."); 0 if not Strata's.
 * route_at also resolves paths relative to a Strata directory fd. */
int shim_route(const char *path, char out[PATH_MAX]);
int shim_route_at(int dirfd, const char *path, char out[PATH_MAX]);

#endif
