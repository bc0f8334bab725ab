/*
 * Test-only hook compiled into build/tests/strata/libstrata_testhooks.so (the
 * production libstrata is built without STRATA_TEST_HOOKS and has no hook).
 *
 * $STRATA_TEST_KILL_AFTER_APPENDS=N: SIGKILL this process right after its
 * N-th committed log append, i.e. possibly inside a transaction (tests of
 * writev atomicity).  Unset: never.
 */
#include "strata_internal.h"

#include <signal.h>
#include <stdlib.h>

void testhook_after_append(void)
{
    static long left = -2;
    if (left == -2) {
        const char *s = getenv("STRATA_TEST_KILL_AFTER_APPENDS");
        left = s ? atol(s) : -1;
    }
    if (left > 0 && --left == 0)
        raise(SIGKILL);
}
