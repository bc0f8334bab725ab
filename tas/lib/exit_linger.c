/* At exit, let closed connections finish like the kernel would.  The TX
 * buffers live in this process's segment and the daemon resets every flow
 * of an app that goes away, so exiting right after close() would cut off
 * data still in flight (the peer would see ECONNRESET, not the end). */
#define _GNU_SOURCE
#include "interpose.h"

#define LINGER_DATA_MS 10000   /* for the peer to acknowledge our data */
#define LINGER_FIN_MS 500      /* then for its FIN: ours is out by now */

static void linger_until(int until_peer_fin, int64_t deadline)
{
    while (lt_flows_lingering(until_peer_fin) > 0) {
        int left = lt_ms_left(deadline);
        if (left == 0 || lt_wait(NULL, 0, left) < 0)
            return;
    }
}

__attribute__((destructor)) static void exit_linger(void)
{
    lt_lock();
    if (lt_app != NULL) {
        lt_progress();
        linger_until(0, lt_now_ns() + (int64_t)LINGER_DATA_MS * 1000000);
        linger_until(1, lt_now_ns() + (int64_t)LINGER_FIN_MS * 1000000);
    }
    lt_unlock();
}
