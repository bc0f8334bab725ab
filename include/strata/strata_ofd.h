/*
 * Shared state of one Strata open file description (OFD), defined once.
 *
 * The kernel shares an open file description between the processes that
 * inherit it (fork, exec, posix_spawn, SCM_RIGHTS) and between dup'd fds.
 * A Strata OFD that may be shared lives in a memfd named STRATA_OFD_NAME,
 * mapped MAP_SHARED by every process holding it: they see one offset, one
 * set of status flags and one lease holder.  The fd number itself is an
 * O_PATH descriptor of that memfd, so a program running without libstrata
 * gets EBADF on read and write instead of touching a placeholder.  A new
 * program's libstrata finds such fds in /proc/self/fd at start and adopts
 * them (strata/libstrata/ofd.c).
 */
#ifndef STRATA_OFD_H
#define STRATA_OFD_H

#include <stdint.h>

/* CDEF-BEGIN */
#define STRATA_OFD_MAGIC 0x44464f5441525453ULL /* "STRATOFD" */
#define STRATA_OFD_VERSION 1
#define STRATA_OFD_SIZE 8192

struct strata_ofd {
    uint64_t magic;
    uint32_t version;
    uint32_t is_dir;
    uint64_t fs_id;          /* pool the file lives in */
    uint32_t ino, gen;
    int32_t flags;           /* O_ACCMODE | O_APPEND | O_NONBLOCK ... (F_SETFL is shared) */
    int32_t lease_pid;       /* process holding the inode's write lease for this OFD, 0 none */
    uint64_t off;            /* the file offset every holder moves */
    uint32_t path_len;
    uint32_t pad;
    char path[STRATA_OFD_SIZE - 56]; /* pool path, NUL-terminated */
};
/* CDEF-END */

#define STRATA_OFD_NAME "strata-ofd"

_Static_assert(sizeof(struct strata_ofd) == STRATA_OFD_SIZE, "ofd page size");

#endif
