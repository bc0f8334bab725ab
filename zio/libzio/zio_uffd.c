/*
 * userfaultfd primitives (the thread that serves the faults: zio_fault.c).
 *
 * Intermediates are registered in MISSING mode: their core is unmapped and the
 * first touch is served by filling the page from the original (UFFDIO_COPY).
 * Originals are write-protected with uffd WP mode rather than mprotect:
 * a write then arrives on the same descriptor and thread as every other
 * fault, the host program's own SIGSEGV handlers stay untouched, and
 * protection is per page table entry, so it neither splits VMAs by
 * protection nor interferes with the program's own mprotect calls.
 */
#include "zio_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kb/env.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

int zio_uffd = -1;

/* every ioctl on the descriptor once it works, counted by kind; a raw
 * system call: the shims below libzio (libtas, libstrata interpose ioctl)
 * have nothing to do with it and must not run under zio_lock */
static int uffd_ioctl(enum zio_ctr c, unsigned long req, void *arg)
{
    ctr_add(c, 1);
    return (int)syscall(SYS_ioctl, zio_uffd, req, arg);
}

static int uffd_create(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    /* kernels >= 6.1 also hand out full (kernel-fault) descriptors through
     * /dev/userfaultfd to whoever may open it */
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

int uffd_open(void)
{
    const char *force = kb_getenv("ZIO_FORCE_FALLBACK");
    if (force && *force && *force != '0') {
        zio_log("userfaultfd disabled by ZIO_FORCE_FALLBACK; plain copies");
        return -1;
    }
    int fd = uffd_create();
    if (fd < 0) {
        int um = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
        if (um >= 0) {
            /* Conservative: with user-mode-only faults, any system call that
             * libzio does not interpose (stdio, sendfile, ...) would fail
             * with EFAULT on an intermediate page, so do not elide at all. */
            close(um);
            zio_log("userfaultfd available in user mode only "
                    "(vm.unprivileged_userfaultfd=0, no /dev/userfaultfd access); plain copies");
        } else {
            zio_log("userfaultfd unavailable (%s); plain copies", strerror(errno));
        }
        return -1;
    }
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    if (ioctl(fd, UFFDIO_API, &api) != 0 ||
        !(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
        zio_log("userfaultfd lacks write-protect support; plain copies");
        close(fd);
        return -1;
    }
    zio_uffd = fd;
    return 0;
}

int uffd_register(uintptr_t lo, uintptr_t hi, int wp)
{
    if (zio_uffd < 0)
        return 0;
    struct uffdio_register r = {
        .range = { .start = lo, .len = hi - lo },
        .mode = wp ? UFFDIO_REGISTER_MODE_WP : UFFDIO_REGISTER_MODE_MISSING,
    };
    if (uffd_ioctl(C_SYS_REGISTER, UFFDIO_REGISTER, &r) != 0) {
        ctr_add(C_UFFD_ERRORS, 1);
        return -1;
    }
    return 0;
}

void uffd_unregister(uintptr_t lo, uintptr_t hi)
{
    if (zio_uffd < 0 || lo >= hi)
        return;
    struct uffdio_range r = { .start = lo, .len = hi - lo };
    uffd_ioctl(C_SYS_UNREGISTER, UFFDIO_UNREGISTER, &r);
}

int uffd_protect(uintptr_t lo, uintptr_t hi, int on)
{
    if (zio_uffd < 0 || lo >= hi)
        return 0;
    struct uffdio_writeprotect w = {
        .range = { .start = lo, .len = hi - lo },
        .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    if (uffd_ioctl(C_SYS_PROTECT, UFFDIO_WRITEPROTECT, &w) != 0) {
        ctr_add(C_UFFD_ERRORS, 1);
        return -1;
    }
    return 0;
}

/* Protect without counting an error: fails when [lo,hi) is not (all)
 * registered in WP mode. */
int uffd_try_protect(uintptr_t lo, uintptr_t hi)
{
    if (zio_uffd < 0)
        return 0;
    struct uffdio_writeprotect w = {
        .range = { .start = lo, .len = hi - lo }, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
    };
    return uffd_ioctl(C_SYS_PROTECT, UFFDIO_WRITEPROTECT, &w);
}

void uffd_wake(uintptr_t lo, size_t len)
{
    struct uffdio_range r = { .start = lo, .len = len };
    uffd_ioctl(C_SYS_FILL, UFFDIO_WAKE, &r);
}

/* UFFDIO_COPY found no registered VMA at page (ENOENT for this page alone).
 * Unmapped: the memory went away without libzio seeing it (glibc's own
 * munmap of a cached thread stack, say) and nothing can read it there, so
 * there is nothing to lose: count it and go on.  Mapped but unregistered:
 * the program can read it and would see whatever is there instead of the
 * intermediate's bytes.  libzio cannot tell a registration it lost (then the
 * bytes would be lost) from memory replaced behind its back (then storing
 * them would corrupt it), so it stops, naming the page. */
static void fill_unregistered(uintptr_t page, uintptr_t src)
{
    unsigned char v;
    ctr_add(C_SYS_MINCORE, 1);
    if (mincore((void *)page, ZIO_PAGE, &v) != 0 && errno == ENOMEM) {
        ctr_add(C_UFFD_ERRORS, 1);
        zio_log("intermediate page %#lx was unmapped behind libzio; not filled",
                (unsigned long)page);
        return;
    }
    zio_fatal("cannot fill intermediate page %#lx from %#lx: it is mapped but no longer "
              "registered with userfaultfd (UFFDIO_COPY: ENOENT); aborting rather than let "
              "the program read wrong bytes", (unsigned long)page, (unsigned long)src);
}

/* Map [dst, dst+len) (page aligned) with the bytes at src and wake waiters.
 * Pages already present are skipped (someone resolved them before us).
 *
 * UFFDIO_COPY wants its whole destination inside one VMA: across a VMA
 * boundary it copies nothing and fails with ENOENT.  An intermediate can
 * straddle one on glibc's brk heap.  When glibc grows the heap while its top
 * pages are still registered (an idle registration, zio_reg.c, or a live
 * intermediate), the kernel cannot extend that VMA (its userfaultfd flags
 * differ) and makes a new one; glibc at once writes the top chunk's header
 * there, so the new VMA gets an anon_vma of its own, and two anonymous VMAs
 * with different anon_vmas never merge, also not once an elision registers
 * both alike.  Such fills used to fail whole and the pages read as zeros.
 *
 * So on ENOENT the fill goes on in halves until each piece lies in one VMA:
 * no extra ioctl where there is no boundary (the usual case), about
 * 2 log2(pages) failed ioctls (a VMA lookup each) per boundary.  Refusing
 * to elide into the brk heap would also be correct but give up elision for
 * every heap buffer; re-registering would not help (registration does not
 * merge the VMAs).  Any other failure to fill a page the program can read
 * aborts: the bytes must never silently become zeros. */
int uffd_fill(uintptr_t dst, uintptr_t src, size_t len)
{
    if (zio_uffd < 0)
        return 0;
    ctr_add(C_PAGES_FILLED, len / ZIO_PAGE);
    size_t chunk = len;   /* what the next ioctl tries */
    while (len > 0) {
        if (chunk > len)
            chunk = len;
        struct uffdio_copy c = { .dst = dst, .src = src, .len = chunk, .mode = 0 };
        int r = uffd_ioctl(C_SYS_FILL, UFFDIO_COPY, &c), err = errno;
        size_t done = r == 0 ? chunk : c.copy > 0 ? (size_t)c.copy : 0;
        dst += done, src += done, len -= done;
        if (r == 0 || done > 0 || err == EAGAIN) {
            chunk = len;   /* progress (or a retry): try all the rest */
            continue;
        }
        if (err == ENOENT && chunk > ZIO_PAGE) {
            if (chunk == len)
                ctr_add(C_FILLS_SPLIT, 1);
            chunk = pg_floor(chunk / 2);   /* crosses a VMA boundary? */
            continue;
        }
        if (err == ENOENT)
            fill_unregistered(dst, src);   /* returns only if unmapped */
        else if (err == EEXIST)   /* first page present: wake its waiters */
            uffd_wake(dst, ZIO_PAGE);
        else if (err == ESRCH) {   /* the address space is being torn down */
            ctr_add(C_UFFD_ERRORS, 1);
            return -1;
        } else {
            zio_fatal("cannot fill intermediate pages %#lx+%zu from %#lx: UFFDIO_COPY: %s",
                      (unsigned long)dst, chunk, (unsigned long)src, strerror(err));
        }
        dst += ZIO_PAGE, src += ZIO_PAGE, len -= ZIO_PAGE;
        /* after an unmapped page go on page by page (more are likely
         * unmapped), after a present one try all the rest */
        chunk = err == ENOENT ? ZIO_PAGE : len;
    }
    return 0;
}

/* Map zero-filled pages at the absent registered pages of [lo,hi) (page
 * aligned, at most UFFD_ZERO_MAX bytes) and keep the registration: the
 * pages about to be written plainly then take no fault, and the range
 * stays registered for the next elision.  Pages present already (EEXIST)
 * or not registered (ENOENT: the kernel serves them) are left alone. */
void uffd_populate_zero(uintptr_t lo, uintptr_t hi)
{
    static char zeros[UFFD_ZERO_MAX] __attribute__((aligned(4096)));   /* never written */
    if (zio_uffd < 0)
        return;
    size_t chunk = hi - lo;
    while (lo < hi) {
        if (chunk > hi - lo)
            chunk = hi - lo;
        struct uffdio_copy c = { .dst = lo, .src = (uintptr_t)zeros, .len = chunk, .mode = 0 };
        int r = uffd_ioctl(C_SYS_FILL, UFFDIO_COPY, &c), err = errno;
        size_t done = r == 0 ? chunk : c.copy > 0 ? (size_t)c.copy : 0;
        lo += done;
        ctr_add(C_IDLE_ZEROED, done / ZIO_PAGE);
        if (r == 0 || done > 0 || err == EAGAIN) {
            chunk = hi - lo;
            continue;
        }
        if (err == ENOENT && chunk > ZIO_PAGE) {   /* a VMA boundary: page by page */
            chunk = ZIO_PAGE;
            continue;
        }
        lo += ZIO_PAGE;   /* this page is present (EEXIST) or unregistered */
        if (err == EEXIST)
            chunk = hi - lo;   /* the rest may be absent */
    }
}

void uffd_zero(uintptr_t page)
{
    struct uffdio_zeropage z = { .range = { .start = page, .len = ZIO_PAGE }, .mode = 0 };
    if (uffd_ioctl(C_SYS_FILL, UFFDIO_ZEROPAGE, &z) != 0)
        uffd_wake(page, ZIO_PAGE);
}
