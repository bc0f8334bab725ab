/*
 * Simulated power loss, done from the outside: the pool is mapped as a plain
 * file and walked with the on-pool layout (include/strata/strata_layout.h),
 * without mounting it (mounting would recover the slot first) and without
 * libstrata's internals, so the production library carries no test hook.
 */
#define _GNU_SOURCE
#include "tear_tail.h"

#include "strata/strata_layout.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Is the slot's owner still running?  The crash tests kill and reap the
 * writer just before, so its pid is gone (no pid-reuse check needed here). */
static int owner_alive(int32_t pid)
{
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* The last committed entry of the slot's current epoch, or NULL. */
static struct strata_entry *last_entry(char *log, uint64_t log_bytes, uint32_t epoch)
{
    struct strata_entry *last = NULL;
    uint64_t off = 0;
    while (off + sizeof(struct strata_entry) <= log_bytes) {
        struct strata_entry *e = (struct strata_entry *)(log + off);
        if (e->commit != STRATA_COMMIT || e->epoch != epoch || e->entry_len < sizeof(*e) ||
            e->entry_len % 64 != 0 || off + e->entry_len > log_bytes)
            break;
        last = e;
        off += e->entry_len;
    }
    return last;
}

static void tear(struct strata_entry *e, int mode)
{
    char *bytes = (char *)e;
    if (mode == 0) {
        memset(e, 0, e->entry_len);
    } else if (mode == 1) {
        bytes[e->entry_len - 1] ^= 0x5a; /* covered by the entry's crc */
        if (e->entry_len > sizeof(*e))
            bytes[sizeof(*e)] ^= 0x5a;
    } else {
        e->commit = 0;
    }
}

int tear_tail(const char *pool_path, int mode)
{
    int fd = open(pool_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < STRATA_BLOCK) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    char *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return -1;
    struct strata_super *sb = (struct strata_super *)base;
    if (sb->magic != STRATA_MAGIC || sb->off_logs + (uint64_t)sb->nslots * sb->log_bytes > (uint64_t)st.st_size) {
        munmap(base, (size_t)st.st_size);
        errno = EINVAL;
        return -1;
    }
    int torn = 0;
    for (uint32_t i = 0; i < sb->nslots; i++) {
        struct strata_slot *s = (struct strata_slot *)(base + sb->off_slots) + i;
        if (s->owner_pid == 0 || owner_alive(s->owner_pid))
            continue;
        struct strata_entry *last = last_entry(base + sb->off_logs + i * sb->log_bytes, sb->log_bytes, s->epoch);
        if (last == NULL)
            continue;
        tear(last, mode);
        torn++;
    }
    int rc = msync(base, (size_t)st.st_size, MS_SYNC);
    munmap(base, (size_t)st.st_size);
    return rc == 0 ? torn : -1;
}
