/*
 * LD_PRELOAD shim, memory mappings: mmap of a Strata fd maps its shadow
 * (mmap_shadow.c); munmap, msync, mremap and mprotect of such a mapping
 * keep the shadow's bookkeeping and write back.  Anything else goes to libc
 * (the fast path when no Strata mapping exists is one load).
 */
#include "shim.h"
#include "strata_internal.h"
#include "mmap_shadow.h"

#include <stdarg.h>
#include <sys/mman.h>

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if ((flags & MAP_FIXED) && shadow_has_maps())
        strata_map_replaced(addr, len); /* a Strata mapping there goes away */
    if (!(flags & MAP_ANONYMOUS) && strata_is_fd(fd))
        return strata_mmap(addr, len, prot, flags, fd, off);
    return REAL(mmap)(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
    if ((flags & MAP_FIXED) && shadow_has_maps())
        strata_map_replaced(addr, len);
    if (!(flags & MAP_ANONYMOUS) && strata_is_fd(fd))
        return strata_mmap(addr, len, prot, flags, fd, off);
    return REAL(mmap64)(addr, len, prot, flags, fd, off);
}

int munmap(void *addr, size_t len)
{
    return shadow_has_maps() ? strata_munmap(addr, len) : REAL(munmap)(addr, len);
}

int msync(void *addr, size_t len, int flags)
{
    return shadow_has_maps() ? strata_msync(addr, len, flags) : REAL(msync)(addr, len, flags);
}

int mprotect(void *addr, size_t len, int prot)
{
    return shadow_has_maps() ? strata_mprotect(addr, len, prot) : REAL(mprotect)(addr, len, prot);
}

void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    void *new_addr = (flags & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
    va_end(ap);
    if (shadow_has_maps())
        return strata_mremap(old, oldlen, newlen, flags, new_addr);
    return REAL(mremap)(old, oldlen, newlen, flags, new_addr);
}
