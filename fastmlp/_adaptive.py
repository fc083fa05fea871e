"""How many threads each mini-batch kernel call runs on, chosen from measured speed.

The mini-batch kernel synchronises its threads twice per batch. On a quiet machine two threads
beat one; while another process keeps a core busy, a thread that waits for a descheduled one
waits a whole scheduler slice, and two threads can run many times slower than one (this
project's development machine, under heavy load: 12,300 against 180,000 samples/s). The kernel's results do not depend on the thread count (fixed
blocks and summation orders, bitwise) nor on how a chunk of batches is split into calls, so
the count can change between any two batches without changing what is learned.

``ThreadChooser.run`` trains one chunk (the trainer's unit, 8,192 samples) through a callback
and keeps the latest speed of each thread count (seconds per sample; the latest, as an older
one may be from before the load changed; not from a call of fewer than ``PROBE_SAMPLES``,
such as a fit's two-sample warm-up, whose time is mostly the call's own):

- a *probe* runs the start of the chunk on the other count, two batches per call, up to
  ``PROBE_SAMPLES`` (whole batches, at most half the chunk); it stops early once it runs more
  than ``ABORT`` times slower than the current count (a busy machine makes two threads 10-20
  times slower: a few milliseconds tell), and the rest of the chunk runs on whichever count is
  faster;
- on the first chunk the current count (all threads) is first timed over two batches;
- a probe happens on the first chunks (until both counts are measured), after ``probe_every``
  chunks, and on the next chunk when the current count has just run more than ``SLOWDOWN``
  times slower than the time before (the machine got busy);
- a probe that loses doubles the interval (up to ``MAX_PROBE_EVERY`` chunks), so a steady
  machine pays for about one probe in 32 chunks; one that wins resets it to 1.
"""

from __future__ import annotations

import time

MAX_PROBE_EVERY = 32
SLOWDOWN = 1.5
ABORT = 2.0
PROBE_SAMPLES = 1024  # at most; whole batches, at most half the chunk
PROBE_BATCHES_PER_CALL = 2


class ThreadChooser:
    """Chooses between 1 and ``most`` threads for the calls of each chunk (``run``)."""

    def __init__(self, most, clock=time.perf_counter):
        self.most = int(most)
        self.clock = clock
        self.current = self.most
        self.rate = {}  # thread count -> seconds per sample, latest measurement
        self.probe_every = 1
        self.since_probe = 0
        self.switches = 0  # how often the choice changed (tests, reports)

    @property
    def adaptive(self):
        return self.most > 1

    def other(self, count):
        return 1 if count == self.most else self.most

    def _timed(self, call, count, start, n_samples):
        tic = self.clock()
        n_done = call(count, start, n_samples)
        return n_done, self.clock() - tic

    def run(self, n_samples, batch_size, call):
        """Train ``n_samples`` (one chunk) by calls ``call(count, start, n)`` -> samples done,
        each training the chunk's samples start .. start + n - 1 (whole batches, except at the
        chunk's end) on ``count`` threads; a call that does fewer than n stops the chunk (a
        non-finite loss). Returns the samples done."""
        start = 0
        if self._probe_due(n_samples, batch_size):
            start, stopped = self._probe(batch_size, call)
            if stopped or start == n_samples:
                return start
        count = self.current
        n_done, seconds = self._timed(call, count, start, n_samples - start)
        self._record(count, n_done, seconds)
        return start + n_done

    def _probe_due(self, n_samples, batch_size):
        if not self.adaptive or 2 * self._probe_size(batch_size) > n_samples:
            return False  # one thread only, or too small to split: a warm-up, an epoch's end
        if len(self.rate) < 2 or self.since_probe + 1 >= self.probe_every:
            self.since_probe = 0
            return True
        self.since_probe += 1
        return False

    @staticmethod
    def _probe_size(batch_size):
        return max(1, PROBE_SAMPLES // batch_size) * batch_size

    def _probe(self, batch_size, call):
        """Run the chunk's start on the other count; returns (samples done, whether a call
        stopped the chunk)."""
        probed = self.other(self.current)
        size = self._probe_size(batch_size)
        step = PROBE_BATCHES_PER_CALL * batch_size
        done, spent = 0, 0.0
        if self.current not in self.rate:
            # The first chunk: a short measure of the current count too, so that a busy machine
            # does not run the rest of the chunk on two threads before it knows.
            first_call = min(step, size)  # the probe and this stay within 2 * size <= the chunk
            n_done, seconds = self._timed(call, self.current, 0, first_call)
            if n_done < first_call:
                return n_done, True
            self.rate[self.current] = seconds / n_done
            done = n_done
            size += done
        known = self.rate[self.current]
        first = done
        while done < size:
            n = min(step, size - done)
            n_done, seconds = self._timed(call, probed, done, n)
            done += n_done
            spent += seconds
            if n_done < n:
                return done, True
            if spent > ABORT * known * (done - first):
                break  # clearly slower: no need to measure it to the end
        self.rate[probed] = spent / (done - first)
        if self.rate[probed] < known:
            self.current = probed
            self.switches += 1
            self.probe_every = 1
        else:
            self.probe_every = min(2 * self.probe_every, MAX_PROBE_EVERY)
        return done, False

    def _record(self, count, n_samples, seconds):
        """The current count trained ``n_samples`` in ``seconds``."""
        if n_samples < PROBE_SAMPLES or seconds <= 0:
            return  # too few samples to tell a speed: the call's own cost would dominate
        per_sample = seconds / n_samples
        known = self.rate.get(count)
        if known is not None and per_sample > SLOWDOWN * known:
            self.since_probe = self.probe_every  # the machine changed: probe on the next chunk
            self.probe_every = 1
        self.rate[count] = per_sample
