"""Congestion control in the slow path (dissertation 3.2.2).

Every control interval (cc.interval_rtts x the flow's RTT, but no more often
than the slow path's tick) each flow's controller reads the fast path's
feedback counters (bytes ACKed, bytes ECN-marked, fast retransmits, RTT) and
writes a new rate, which the fast path enforces.

An app-limited flow's rate is clamped to 1.2 x what it sent, but not below
the fastest it sent in the last RESTART_S: a request/response flow is quiet
for most control intervals (2 RTTs) and sends a burst in the next, and a
clamp to each quiet interval's rate (0, so cc.init_kbps) paced every
response beyond the fast path's burst credit at init_kbps.
After RESTART_S without sending the rate falls to init_kbps, TCP's restart
after idle (RFC 5681 4.1, after an RTO: at least 200 ms in Linux) in rate
form.

An idle flow (the tick parks it, tcp.py) is not updated until it changes:
a controller is `settled()` once an interval with nothing sent, ACKed or lost
left its state unchanged, and it has been quiet for RESTART_S (its rate
restarted), so every further such update would only move its clock;
`resume` moves the clock (and decays what decays) for the updates skipped.
"""


# The fast path's rate is a 32-bit kbps count; no flow needs more than this.
RATE_MAX_KBPS = 100_000_000
# An app-limited flow keeps the rate it last sent at for this long (seconds)
RESTART_S = 0.2


class _RateController:
    def __init__(self, cfg, fp, conn, start=None):
        """start: when the flow was installed (its counters were 0 then), so
        that the first interval counts what it sent before the first update
        (a new flow sends a burst at once: a window of 143 KB at 10 Mbps,
        then nothing for 110 ms); None: the first update takes the baseline."""
        self.cfg, self.fp, self.conn = cfg.cc, fp, conn
        self.rate = cfg.cc.init_kbps
        self.last = None if start is None else (0, 0, 0, 0)  # counters at the previous update
        self.last_time = start
        self.send_rate = 0.0       # kbps measured over the last interval
        self.ack_rate = 0.0        # kbps ACKed over the last interval
        self.timeouts = 0
        self.before_timeout = None  # state to restore if the timeout was spurious
        self.spurious_seen = 0
        self.interval = 0.0        # the last update's control interval (s)
        self.peak_rate = 0.0       # the fastest interval's send rate since peak_time
        self.peak_time = start     # ... when it was measured
        self._settled = False      # the last interval's update was idle and a fixed point
        self._apply()

    def _apply(self):
        self.fp.lib.tas_fp_flow_set_rate(self.fp.handle, self.conn.flow_id, int(self.rate))

    def on_timeout(self):
        if self.before_timeout is None:
            self.before_timeout = self._state()
        self.timeouts += 1
        self._settled = False

    def settled(self, f):
        """An update now, or any later while f stays as it is, would change
        nothing but the clock: the last interval was idle and left the state
        as it was, and nothing has moved since."""
        return (self._settled and f.cnt_spurious_rto == self.spurious_seen and
                (f.cnt_ackb, f.cnt_ecnb, f.cnt_frexmits, f.cnt_txb) == self.last)

    def _idle_key(self):
        """What an idle update may change besides the clock."""
        return (self.rate,)

    def _skip_idle(self, n):
        """n idle updates were skipped (settled): what they would have decayed."""

    def resume(self, prev, skipped):
        """The flow was parked, settled, for `skipped` ticks, the last at
        time prev: the updates those ticks made (one each, if a control
        interval had passed) would only have moved last_time, to about
        prev.  (With an interval longer than a tick the per-tick last_time
        was somewhere in the interval before prev.)"""
        if self.last_time is None or skipped <= 0:
            return
        n = min(skipped, int((prev - self.last_time) / max(self.interval, 1e-6)))
        if n > 0:
            self.last_time = prev
            self._skip_idle(n)

    def _state(self):
        return {"rate": self.rate}

    def _restore(self, state):
        self.rate = max(self.rate, state["rate"])

    def _undo_spurious(self, f):
        """The fast path saw the ACK after a timeout echo a timestamp from
        before the retransmission: nothing was lost, the receiver was only
        slow (on a shared CPU).  Undo the reaction as Linux does."""
        if f.cnt_spurious_rto == self.spurious_seen:
            return False
        self.spurious_seen = f.cnt_spurious_rto
        if self.before_timeout is not None:
            self._restore(self.before_timeout)
            self.timeouts = 0
        self.before_timeout = None
        return True

    def update(self, f, now):
        if self.last_time is None:
            self.last_time, self.last = now, (f.cnt_ackb, f.cnt_ecnb, f.cnt_frexmits, f.cnt_txb)
            self.spurious_seen = f.cnt_spurious_rto
            return
        # Read before the count: the fast path bumps the count, then clears
        # the pending stamp, so a cleared stamp seen here means a count that
        # is already up to date.
        resolved = f.rto_ts_us == 0
        if self._undo_spurious(f):
            self._settled = False
            self._apply()
        elif resolved and self.timeouts == 0:
            self.before_timeout = None     # that timeout was a real one
        interval = max(f.rtt_est_us, 1) * self.cfg.interval_rtts / 1e6
        self.interval = interval
        dt = now - self.last_time
        if dt < interval:
            return
        ackb, ecnb, frex, txb = (f.cnt_ackb - self.last[0], f.cnt_ecnb - self.last[1],
                                 f.cnt_frexmits - self.last[2], f.cnt_txb - self.last[3])
        self.last, self.last_time = (f.cnt_ackb, f.cnt_ecnb, f.cnt_frexmits, f.cnt_txb), now
        quiet = not (ackb or ecnb or frex or txb)
        key = self._idle_key() if quiet else None
        self.send_rate = txb * 8 / dt / 1000
        self.ack_rate = ackb * 8 / dt / 1000
        recent = self._recent_peak(now)
        # Clamp first (dissertation 3.2.2): an app-limited flow's rate must
        # not run away from what it actually sends; then run the algorithm,
        # so a flow that is rate-limited can still double in slow start.
        # Only an app-limited flow: one with bytes waiting (for the rate or
        # the window) that sent little was held back by its receiver or a
        # stall, and clamping it would throw its rate away.
        backlogged = f.tx_avail > 0
        if not backlogged:
            self.rate = min(self.rate, max(1.2 * recent, self.cfg.init_kbps))
        loss = frex > 0 or self.timeouts > 0
        self.timeouts = 0
        before = self.rate
        self.control(ackb, ecnb, loss, f.rtt_est_us)
        if backlogged and self.send_rate < 0.5 * before and self.rate > before:
            self.rate = before      # the rate was not what held it back: no growth
        self.rate = min(max(self.cfg.init_kbps / 10, self.rate), RATE_MAX_KBPS)
        self._settled = (quiet and not loss and self.before_timeout is None and
                         self._idle_key() == key and recent == 0.0)
        self._apply()

    def _recent_peak(self, now):
        """The fastest send rate of an interval in the last RESTART_S (this
        interval's included), 0 if it sent nothing in that time."""
        if self.send_rate > 0 and (self.send_rate >= self.peak_rate or
                                   now - self.peak_time > RESTART_S):
            self.peak_rate, self.peak_time = self.send_rate, now
        if now - self.peak_time > RESTART_S:
            self.peak_rate = 0.0
        return self.peak_rate


class DctcpRate(_RateController):
    """Rate-based DCTCP: slow start doubles per interval, then additive
    steps; cut in proportion to the ECN-marked fraction; halve on loss.

    Slow start doubles the larger of the rate and what the interval's ACKs
    carried: the fast path lets a flow send a burst ahead of its rate and
    then waits until the rate has paid it off, so at the start a whole
    window (143 KB) goes out, and at 10 Mbps nothing more for 110 ms (ten
    control intervals without an ACK, without growth).  Doubling only the
    rate took 0.3 s to reach the 60 Gbps two daemons carry over memif, a
    tenth of a 3-second iperf3 run; an ACKed burst is a rate the path has
    carried without a mark, as TCP's slow start grows by the bytes ACKed."""

    def __init__(self, cfg, fp, conn, start=None):
        self.alpha = 0.0
        self.slow_start = True
        super().__init__(cfg, fp, conn, start)

    def _state(self):
        return {"rate": self.rate, "slow_start": self.slow_start}

    def _restore(self, state):
        super()._restore(state)
        self.slow_start = self.slow_start or state["slow_start"]

    def _idle_key(self):
        return (self.rate, self.alpha, self.slow_start)

    def control(self, ackb, ecnb, loss, rtt_us):
        g = self.cfg.dctcp_g
        if loss:
            self.rate /= 2
            self.slow_start = False
            return
        if ackb == 0:
            return
        self.alpha = (1 - g) * self.alpha + g * (ecnb / ackb)
        if ecnb > 0:
            self.rate *= 1 - self.alpha / 2
            self.slow_start = False
        elif self.slow_start:
            self.rate = 2 * max(self.rate, self.ack_rate)
        else:
            self.rate += self.cfg.step_kbps


class Timely(_RateController):
    """TIMELY: react to the RTT gradient between Tlow and Thigh."""

    def __init__(self, cfg, fp, conn, start=None):
        self.prev_rtt = None
        self.diff = 0.0
        self.min_rtt = None
        super().__init__(cfg, fp, conn, start)

    def _idle_key(self):
        # The gradient decays on every update (by 0.98: the RTT does not
        # move without ACKs); that is only a change that matters where it
        # sets the rate (between Tlow and Thigh, rising).  Elsewhere it is
        # decayed for the skipped updates when the flow resumes.
        c = self.cfg
        rtt = self.prev_rtt
        gradient_rules = (rtt is not None and c.timely_tlow_us <= rtt <= c.timely_thigh_us and
                          self.diff > 0)
        return (self.rate, self.prev_rtt, self.min_rtt, self.diff if gradient_rules else None)

    def _skip_idle(self, n):
        self.diff *= 0.98 ** n

    def control(self, ackb, ecnb, loss, rtt_us):
        c = self.cfg
        if loss:
            self.rate /= 2
            return
        if rtt_us <= 0:
            return
        self.min_rtt = rtt_us if self.min_rtt is None else min(self.min_rtt, rtt_us)
        if self.prev_rtt is not None:
            self.diff = 0.98 * self.diff + 0.02 * (rtt_us - self.prev_rtt)
        self.prev_rtt = rtt_us
        if rtt_us < c.timely_tlow_us:
            self.rate += c.step_kbps
        elif rtt_us > c.timely_thigh_us:
            self.rate *= 1 - c.timely_beta * (1 - c.timely_thigh_us / rtt_us)
        elif self.diff / self.min_rtt <= 0:
            self.rate += c.step_kbps
        else:
            self.rate *= 1 - c.timely_beta * min(1.0, self.diff / self.min_rtt)


class ConstRate:
    def __init__(self, cfg, fp, conn, start=None):
        fp.lib.tas_fp_flow_set_rate(fp.handle, conn.flow_id, cfg.cc.const_kbps)

    def settled(self, f):
        return True     # nothing to update, idle or not

    def resume(self, prev, skipped):
        pass

    def update(self, f, now):
        pass

    def on_timeout(self):
        pass


ALGORITHMS = {"dctcp-rate": DctcpRate, "timely": Timely, "const-rate": ConstRate}


def factory(cfg, fp):
    """callable(conn, start=None) -> controller (start: when the flow was
    installed), or None when the window alone limits."""
    cls = ALGORITHMS.get(cfg.cc.algorithm)
    if cls is None:
        return None
    return lambda conn, start=None: cls(cfg, fp, conn, start)
