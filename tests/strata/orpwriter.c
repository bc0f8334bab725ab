/*
 * ORP test program, run under the Strata shim (strata run / LD_PRELOAD): it
 * maps the pool's ref area as a receive stack would, registers the map with
 * strata_nvm_map (found with dlsym, as libtas finds it) and writes from it
 * with plain write, pwrite, writev and pwritev2 to /strata/orp.bin.
 *
 *   strata_orpwriter REF_OFF REF_BYTES MODE
 * Map: 1 MiB of the pool at REF_OFF + 4096 (after the ownership table),
 * filled with byte i = (i * 13 + 7) & 0xff.  Prints one JSON line after the
 * writes, then by MODE:
 *   digest   waits for a stdin line, digests its own log, overwrites the map
 *            with (i * 7 + 3) & 0xff, appends five 128 KiB pieces of it (the
 *            fifth crosses the ref trigger, half the mapped bytes: a digest
 *            starts in the background, or runs in the write without the
 *            thread) and waits until nothing is busy; appends a sixth and
 *            starts a digest with strata_digest_kick, waits again; prints a
 *            second line, waits for a line, exits normally
 *   crash    exits at once (_exit: undigested references in the log)
 *   overwrite  overwrites the referenced extent, then exits (breaks the contract)
 *   respect  asks strata_ref_busy before overwriting, digests if busy, exits
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAPLEN (1u << 20)

static int (*nvm_map)(int, uint64_t, const void *, size_t);
static int (*ref_busy)(const void *, size_t);
static int64_t (*digest_self)(void);
static int (*digest_kick)(void);

/* 1 once no byte of the map is referenced any more (a background digest
 * finished), 0 if that did not happen within a minute */
static int released(const unsigned char *va)
{
    for (int i = 0; i < 60000; i++) {
        if (!ref_busy(va, MAPLEN))
            return 1;
        usleep(1000);
    }
    return 0;
}

static void need(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "orpwriter: %s: %s\n", what, strerror(errno));
        exit(2);
    }
}

static void wait_line(void)
{
    char line[16];
    need(fgets(line, sizeof(line), stdin) != NULL, "stdin");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s REF_OFF REF_BYTES digest|crash|overwrite|respect\n", argv[0]);
        return 1;
    }
    uint64_t ref_off = strtoull(argv[1], NULL, 0), ref_bytes = strtoull(argv[2], NULL, 0);
    const char *mode = argv[3];
    nvm_map = (int (*)(int, uint64_t, const void *, size_t))dlsym(RTLD_DEFAULT, "strata_nvm_map");
    ref_busy = (int (*)(const void *, size_t))dlsym(RTLD_DEFAULT, "strata_ref_busy");
    digest_kick = (int (*)(void))dlsym(RTLD_DEFAULT, "strata_digest_kick");
    digest_self = (int64_t(*)(void))dlsym(RTLD_DEFAULT, "strata_digest_self");
    need(nvm_map && ref_busy && digest_self, "libstrata's ORP entry points (run under strata run)");

    int pfd = open(getenv("STRATA_POOL"), O_RDWR);
    need(pfd >= 0, "open pool");
    uint64_t map_off = ref_off + 4096;
    unsigned char *va = mmap(NULL, MAPLEN, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, (off_t)map_off);
    need(va != MAP_FAILED, "mmap pool");
    int zfd = open("/dev/zero", O_RDONLY);
    int r_exdev = nvm_map(zfd, map_off, va, MAPLEN), e_exdev = errno;
    int r_table = nvm_map(pfd, ref_off, va, 8192), e_table = errno;
    int r_beyond = nvm_map(pfd, ref_off + ref_bytes - 4096, va, 8192), e_beyond = errno;
    int r_map = nvm_map(pfd, map_off, va, MAPLEN);
    int r_twice = nvm_map(pfd, map_off, va + 4096, 4096), e_twice = errno;
    for (uint32_t i = 0; i < MAPLEN; i++)
        va[i] = (unsigned char)(i * 13 + 7);

    int fd = open("/strata/orp.bin", O_CREAT | O_RDWR | O_TRUNC, 0644);
    need(fd >= 0, "open /strata/orp.bin");
    static char head[100], tail[50];
    memset(head, 'H', sizeof(head));
    memset(tail, 'T', sizeof(tail));
    struct iovec v1[3] = {{head, sizeof(head)}, {va, 65536}, {tail, sizeof(tail)}};
    ssize_t w1 = writev(fd, v1, 3);                           /* [0, 65686) */
    ssize_t w2 = pwrite(fd, va + 65536, 32768, 65686);        /* [65686, 98454) */
    lseek(fd, 0, SEEK_END);
    struct iovec v3[2] = {{va + 98304, 20000}, {va + 200000, 1000}};
    ssize_t w3 = pwritev2(fd, v3, 2, -1, 0);                  /* [98454, 119454) */
    ssize_t w4 = write(fd, va + 300000, 8000);                /* [119454, 127454) */
    printf("{\"pid\": %d, \"r_exdev\": %d, \"e_exdev\": %d, \"r_table\": %d, \"e_table\": %d, "
           "\"r_beyond\": %d, \"e_beyond\": %d, \"r_map\": %d, \"r_twice\": %d, \"e_twice\": %d, "
           "\"w\": [%zd, %zd, %zd, %zd], \"busy_ref\": %d, \"busy_free\": %d, \"busy_inline\": %d}\n",
           (int)getpid(), r_exdev, e_exdev, r_table, e_table, r_beyond, e_beyond, r_map, r_twice, e_twice,
           w1, w2, w3, w4, ref_busy(va + 1000, 10), ref_busy(va + 120000, 4096), ref_busy(va + 200000, 1000));
    fflush(stdout);

    if (strcmp(mode, "crash") == 0)
        _exit(0);
    if (strcmp(mode, "overwrite") == 0) {
        memset(va, 0xEE, 65536); /* the extent the writev referenced, before digest */
        _exit(0);
    }
    if (strcmp(mode, "respect") == 0) {
        int busy = ref_busy(va, 65536);
        int64_t d = busy ? digest_self() : 0;
        memset(va, 0xEE, 65536);
        printf("{\"busy\": %d, \"digested\": %lld, \"busy_after\": %d}\n", busy, (long long)d,
               ref_busy(va, MAPLEN));
        fflush(stdout);
        _exit(0);
    }
    wait_line(); /* the test reads this process's counters now */
    int64_t d = digest_self();
    int busy_after = ref_busy(va, MAPLEN);
    for (uint32_t i = 0; i < MAPLEN; i++)
        va[i] = (unsigned char)(i * 7 + 3);
    int busy_trigger[5];
    for (int k = 0; k < 5; k++) {
        need(write(fd, va + (size_t)k * 131072, 131072) == 131072, "write 128 KiB");
        busy_trigger[k] = ref_busy(va, MAPLEN);
    }
    int released_trigger = released(va);
    need(write(fd, va + 5 * (size_t)131072, 131072) == 131072, "write 128 KiB");
    int busy_sixth = ref_busy(va, MAPLEN);
    need(digest_kick != NULL, "strata_digest_kick");
    int kick = digest_kick();
    int released_kick = kick == 0 ? released(va) : 0;
    printf("{\"digested\": %lld, \"busy_after\": %d, \"busy_trigger\": [%d, %d, %d, %d, %d], "
           "\"released_trigger\": %d, \"busy_sixth\": %d, \"kick\": %d, \"released_kick\": %d}\n",
           (long long)d, busy_after, busy_trigger[0], busy_trigger[1], busy_trigger[2], busy_trigger[3],
           busy_trigger[4], released_trigger, busy_sixth, kick, released_kick);
    fflush(stdout);
    wait_line();
    close(fd);
    return 0;
}
