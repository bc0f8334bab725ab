/* Simulated power loss for the crash tests (test-only, not in libstrata). */
#ifndef STRATA_TEST_TEAR_TAIL_H
#define STRATA_TEST_TEAR_TAIL_H

/* Damage the last committed entry of every slot whose owner is dead, as if
 * its final cache lines never reached NVM.  mode 0: zero it, 1: flip payload
 * bytes, 2: clear its commit marker.  Returns the number of slots torn, or
 * -1 with errno set. */
int tear_tail(const char *pool_path, int mode);

#endif
