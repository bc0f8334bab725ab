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
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

int zio_uffd = -1;

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
    const char *force = getenv("ZIO_FORCE_FALLBACK");
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
    if (ioctl(zio_uffd, UFFDIO_REGISTER, &r) != 0) {
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
    ioctl(zio_uffd, UFFDIO_UNREGISTER, &r);
}

int uffd_protect(uintptr_t lo, uintptr_t hi, int on)
{
    if (zio_uffd < 0 || lo >= hi)
        return 0;
    struct uffdio_writeprotect w = {
        .range = { .start = lo, .len = hi - lo },
        .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    if (ioctl(zio_uffd, UFFDIO_WRITEPROTECT, &w) != 0) {
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
    return ioctl(zio_uffd, UFFDIO_WRITEPROTECT, &w);
}

void uffd_wake(uintptr_t lo, size_t len)
{
    struct uffdio_range r = { .start = lo, .len = len };
    ioctl(zio_uffd, UFFDIO_WAKE, &r);
}

/* Map [dst, dst+len) (page aligned) with the bytes at src and wake waiters.
 * Pages already present are skipped (someone resolved them before us). */
int uffd_fill(uintptr_t dst, uintptr_t src, size_t len)
{
    if (zio_uffd < 0)
        return 0;
    ctr_add(C_PAGES_FILLED, len / ZIO_PAGE);
    while (len > 0) {
        struct uffdio_copy c = { .dst = dst, .src = src, .len = len, .mode = 0 };
        if (ioctl(zio_uffd, UFFDIO_COPY, &c) == 0)
            return 0;
        size_t done = c.copy > 0 ? (size_t)c.copy : 0;
        dst += done, src += done, len -= done;
        if (errno == EAGAIN)
            continue;
        if (errno != EEXIST) {
            ctr_add(C_UFFD_ERRORS, 1);
            return -1;
        }
        if (len) {   /* first page present: wake anyone waiting, move on */
            uffd_wake(dst, ZIO_PAGE);
            dst += ZIO_PAGE, src += ZIO_PAGE, len -= ZIO_PAGE;
        }
    }
    return 0;
}

void uffd_zero(uintptr_t page)
{
    struct uffdio_zeropage z = { .range = { .start = page, .len = ZIO_PAGE }, .mode = 0 };
    if (ioctl(zio_uffd, UFFDIO_ZEROPAGE, &z) != 0)
        uffd_wake(page, ZIO_PAGE);
}
