/*
 * Profile mode (`zio profile`): nothing is elided, but originals and
 * would-be intermediates are tracked as usual (without unmapping or write
 * protection), so bytes_elided counts what zIO would elide.  It is an
 * estimate: without write protection, an original modified after input still
 * counts as IO data.  Every copy is also counted by size class.  At exit the
 * report goes to $ZIO_PROFILE_DIR/profile.<pid>.json for the CLI to print.
 */
#include "zio_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "kb/env.h"

#define NCLASS 8
static const size_t class_limit[NCLASS] = {
    1024, 4096, 16384, 65536, 262144, 1048576, 4194304, SIZE_MAX,
};
static const char *const class_name[NCLASS] = {
    "<1K", "1K-4K", "4K-16K", "16K-64K", "64K-256K", "256K-1M", "1M-4M", ">=4M",
};
static uint64_t class_count[NCLASS], class_bytes[NCLASS];

void profile_count(size_t n)
{
    int c = 0;
    while (n >= class_limit[c])
        c++;
    __atomic_fetch_add(&class_count[c], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&class_bytes[c], n, __ATOMIC_RELAXED);
}

void profile_report(void)
{
    const char *dir = kb_getenv("ZIO_PROFILE_DIR");
    if (!dir)
        return;
    char path[512], buf[2048];
    snprintf(path, sizeof(path), "%s/profile.%d.json", dir, (int)getpid());
    int n = snprintf(buf, sizeof(buf),
                     "{\"pid\": %d, \"threshold\": %zu, \"inputs_recorded\": %llu, "
                     "\"would_elide_copies\": %llu, \"would_elide_bytes\": %llu, \"classes\": [",
                     (int)getpid(), zio_cfg.threshold,
                     (unsigned long long)*zio_ctr[C_INPUTS_RECORDED],
                     (unsigned long long)*zio_ctr[C_COPIES_ELIDED],
                     (unsigned long long)*zio_ctr[C_BYTES_ELIDED]);
    for (int c = 0; c < NCLASS && n > 0 && n < (int)sizeof(buf); c++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                      "%s{\"class\": \"%s\", \"copies\": %llu, \"bytes\": %llu}",
                      c ? ", " : "", class_name[c], (unsigned long long)class_count[c],
                      (unsigned long long)class_bytes[c]);
    if (n <= 0 || n >= (int)sizeof(buf) - 4)
        return;
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "]}\n");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    zio_in_lib++;
    if (write(fd, buf, (size_t)n) < 0)
        zio_log("cannot write profile report %s", path);
    zio_in_lib--;
    close(fd);
}
