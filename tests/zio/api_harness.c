/*
 * Exercises the explicit zIO API the way an IO stack (libtas, libstrata)
 * would: resolved with dlsym, so it also runs without libzio.
 *
 * A stack-private "RX buffer" is registered as an original (NOPROTECT), the
 * application copies out of it (elided under libzio), the stack asks for the
 * originals of the app buffer (zio_resolve), releases the RX space
 * (zio_release) and overwrites it: the app copy must keep the old bytes.
 * Prints "zio" or "plain" (whether the API was found) and "ok"; exit 1 on a
 * mismatch.
 */
#define ZIO_API_LOOKUP
#include "zio/zio_api.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEN (256 * 1024)

static int fail(const char *what)
{
    printf("FAIL %s\n", what);
    return 1;
}

int main(void)
{
    struct zio_api api;
    int have = zio_api_lookup(&api);
    printf("%s\n", have ? "zio" : "plain");
    uint8_t *rx = aligned_alloc(4096, 2 * LEN), *app = malloc(LEN + 8192), *want = malloc(LEN);
    for (size_t i = 0; i < 2 * LEN; i++)
        rx[i] = (uint8_t)(i * 31 + 7);
    const size_t off = 1234;   /* unaligned: the fringes must be copied */
    if (have && api.register_original(rx, 2 * LEN, ZIO_ORIG_NOPROTECT) != 0)
        return fail("register");
    memcpy(app + 100, rx + off, LEN);
    for (size_t i = 0; i < LEN; i++)
        want[i] = (uint8_t)((i + off) * 31 + 7);

    struct iovec iov[16];
    int n = have ? api.resolve(app + 100, LEN, iov, 16) : 0;
    if (have) {
        if (n < 2)
            return fail("resolve found no intermediate");
        size_t pos = 0;
        for (int k = 0; k < n; k++) {
            if (memcmp(iov[k].iov_base, want + pos, iov[k].iov_len) != 0)
                return fail("resolved bytes");
            pos += iov[k].iov_len;
        }
        if (pos != LEN)
            return fail("resolved length");
        if (api.release(rx, 2 * LEN) != 0)
            return fail("release");
    }
    memset(rx, 0xEE, 2 * LEN);   /* the stack reuses its RX space */
    if (memcmp(app + 100, want, LEN) != 0)
        return fail("app copy after RX reuse");
    if (have && (api.resolve(app + 100, LEN, iov, 16) != 1 || iov[0].iov_base != app + 100))
        return fail("still an intermediate after release");
    printf("ok\n");
    return 0;
}
