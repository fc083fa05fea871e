"""How many threads each mini-batch kernel call runs on, chosen from measured speed (and each
per-sample call, one or two, where two threads give one thread's bits: ``NumbaBackend.
persample_chooser``, with the two options described at the end).

The mini-batch kernel synchronises its threads twice per batch. On a quiet machine two threads
beat one; while another process keeps a core busy, a thread that waits for a descheduled one
waits a whole scheduler slice, and two threads can run many times slower than one (this
project's development machine, under heavy load: 12,300 against 180,000 samples/s). The
kernel's results do not depend on the thread count (fixed blocks and summation orders,
bitwise) nor on how a chunk of batches is split into calls, so the count can change between
any two batches without changing what is learned.

``ThreadChooser.run`` trains one chunk (the trainer's unit, 8,192 samples) through a callback
and keeps the latest speed of each thread count (seconds per sample; the latest, as an older
one may be from before the load changed; not from a call of fewer than ``PROBE_SAMPLES``,
such as a fit's two-sample warm-up, whose time is mostly the call's own):

- a *probe* runs the start of the chunk on the other count, in calls of whole batches, and the
  rest of the chunk runs on whichever count is faster; all threads are chosen only when they
  measured at least ``MARGIN`` times faster than one;
- a probe of one thread is one call of ``PROBE_SAMPLES`` samples;
- a probe of all threads lasts at least ``PROBE_SAMPLES`` samples and ``PROBE_SECONDS`` (calls
  of two batches, then each twice the last, up to the chunk's end), and stops after the first
  call that leaves it more than ``ABORT`` times slower than one thread (plus ``WAKE_SECONDS``):
  a busy machine makes two threads 2-40 times slower, and a few milliseconds tell. The minimum
  time is what a short probe got wrong: with another process busy on one of two cores, two
  threads ran at full speed for 3-5 ms at a time (between that process's turns on the cores),
  then 5-40 times slower, so 1,024 samples at batch 32 (4 ms) often looked faster than one
  thread and the chunk after them ran at a third of one thread's speed (Intel Xeon,
  2026-12-01);
- the first chunk measures one thread, then probes all threads. A probe happens again after
  ``probe_every`` chunks, and on the next chunk when all threads have just run more than
  ``SLOWDOWN`` times slower than the time before (the machine got busy, or the host stalled
  for a moment: that probe measures both counts afresh). One thread running slower is no
  reason to probe more threads: the machine got busier;
- while one thread runs, a probe of all threads also waits for a spare core: since the last
  look (at least ``IDLE_WINDOW`` seconds), the cores other processes used (the machine's
  busy time in ``/proc/stat`` on Linux, less this process's own CPU time) must leave
  ``SPARE_CORE`` of a core beside the one this process trains on. Counting only the others,
  this process's own bursts on all cores (converting input, a previous chunk on all threads)
  never look like load. With another process busy on the second of two cores there is no
  spare core, and no probe costs anything (each cost 4-40 ms there: two threads wait for each
  other at every barrier); when that process stops, the next chunk sees the free core and
  probes. Where the machine's times cannot be read, probes go by the interval alone;
- a chunk too small to split into probes (fewer than twice ``PROBE_SAMPLES``: a small
  training set's every epoch, a large one's last chunk) runs on one thread while no core is
  spare, else on the current count;
- a fit starts on one thread, with no probe, when the machine had no spare core between the
  chooser's creation and the first chunk (the fit's set-up), or, when that was too short to
  tell, at the process's latest look of the last ``VERDICT_SECONDS`` (each first probe cost up
  to 100 ms with a busy-loop process on the other core: a one-epoch fit ran 1.4-1.9 times as
  long as on one thread);
- a probe that loses multiplies the interval by 4 (up to ``MAX_PROBE_EVERY`` chunks), so a
  steady machine pays for about one probe in 64 chunks; one that wins resets it to 1. (A
  probe of one thread costs about 3 ms at 784-128-10 batch 32, 8% of 10,000 samples on two
  threads: doubling up to 32 made 6 probes in the first 73 chunks, about 1% of their time.)

Per-sample training's chooser (batches of 256 samples) has two options. ``probe_in_two_calls``:
a probe of all threads is a call of two batches (where a busy machine aborts it), then one call
with the rest of the chunk, since a call on two threads costs 0.2-0.5 ms of its own (calls that
double from 512 samples made two threads look slower than one). ``retry_sooner``: a probe that
all threads lose by less than ``CLOSE_CALL`` does not lengthen the interval, and a chunk on one
thread slower than all threads' last rate makes a probe due (which, on one thread, still waits
for a spare core).
"""

from __future__ import annotations

import contextlib
import os
import time

MAX_PROBE_EVERY = 64
SLOWDOWN = 1.5
ABORT = 2.0
PROBE_SAMPLES = 1024  # at least; whole batches; a probe needs a chunk of at least twice this
PROBE_SECONDS = 0.025  # a probe of all threads lasts at least this long, unless it aborts
PROBE_BATCHES_PER_CALL = 2  # a probe's first call
WAKE_SECONDS = 0.001  # allowed beyond ABORT: the first call on two threads after one pays
# for waking the other thread and warming its cache (64 samples at batch 32 took 1.2 ms on a
# quiet machine, 19 us per sample against 6 on one thread, Intel Xeon 2026-12-01)
MARGIN = 1.05  # all threads are chosen when a probe finds them this much faster than one
CLOSE_CALL = 1.1  # all threads within this of one thread's time: a close call (``retry_sooner``)
SPARE_CORE = 0.5  # cores (time-averaged) left by other processes beyond ours that let one thread probe more
IDLE_WINDOW = 0.03  # seconds: /proc/stat counts in 10 ms ticks


# The latest conclusive look at the machine in this process, per clock: (when, whether a core
# was spare). A fit's chooser is new, and after a warm set-up its first chunk comes a few
# milliseconds after the input's conversion, too soon to tell from the idle time; a verdict
# of the last VERDICT_SECONDS (the previous fit's, say: a grid search's next candidate) stands
# in for it.
_VERDICTS = {}
VERDICT_SECONDS = 2.0


def _count_cpus(path="/proc/stat"):
    try:
        with open(path, "rb") as stat:
            n = sum(1 for line in stat if line[:3] == b"cpu" and line[3:4].isdigit())
        return n or os.cpu_count() or 1
    except OSError:
        return os.cpu_count() or 1


def idle_seconds(path="/proc/stat"):
    """Seconds all CPUs of the machine have been idle since boot: ``/proc/stat`` (Linux), else
    psutil's ``cpu_times`` where psutil is installed (macOS, Windows: without either, a busy
    machine went unseen, and small fits beside a busy process ran on all threads, 130-230x
    slower in a simulation: audit 41), or None."""
    try:
        with open(path, "rb") as stat:
            fields = stat.readline().split()  # "cpu user nice system idle iowait ..."
        return (int(fields[4]) + int(fields[5])) / _TICKS
    except (OSError, ValueError, IndexError):
        return _psutil_idle_seconds()


_PSUTIL = []  # [psutil module or None], once looked for: the chooser asks at every chunk, and a
# failed import searches sys.path again each time


def _psutil_idle_seconds():
    if not _PSUTIL:
        try:
            import psutil
        except ImportError:
            psutil = None
        _PSUTIL.append(psutil)
    psutil = _PSUTIL[0]
    if psutil is None:
        return None
    try:
        times = psutil.cpu_times()
        return float(times.idle) + float(getattr(times, "iowait", 0.0))
    except Exception:  # noqa: BLE001 - psutil's own failures (an unsupported system): nothing known
        return None


try:
    _TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):  # not a POSIX system
    _TICKS = 100
_CPUS = _count_cpus()  # the CPUs /proc/stat's first line sums over


def others_cores(cpus, wall, idle, own):
    """Other processes' use of ``cpus`` CPUs over ``wall`` seconds, in cores (time-averaged): the
    machine's busy time (``cpus * wall`` less ``idle``, its idle seconds then) less ``own``, this
    process's CPU seconds then (``fastmlp.bench`` says it beside its rows too)."""
    return max(0.0, cpus * wall - idle - own) / wall


class ThreadChooser:
    """Chooses between 1 and ``most`` threads for the calls of each chunk (``run``); with
    ``fixed``, runs every chunk on ``most``."""

    fixed = False  # defaults for choosers pickled before these attributes
    idle = staticmethod(idle_seconds)
    own = staticmethod(time.process_time)
    cpus = _CPUS
    _idle_mark = None
    _slowed = False  # all threads just ran SLOWDOWN times slower: probe both counts afresh
    probe_in_two_calls = False
    retry_sooner = False
    samples_on = None  # thread count -> samples trained on it by this chooser's calls (read by ``fastmlp bench``)

    def __init__(self, most, clock=time.perf_counter, idle=idle_seconds, own=time.process_time, cpus=_CPUS,
                 fixed=False, probe_in_two_calls=False, retry_sooner=False):
        self.most = int(most)
        self.fixed = fixed  # always ``most`` threads (a thread count the user chose)
        self.clock = clock
        self.idle = idle  # () -> the machine's idle seconds so far (all CPUs), or None (unknown)
        self.own = own  # () -> this process's CPU seconds so far (all its threads)
        self.cpus = cpus  # the CPUs ``idle`` counts over
        self._idle_mark = None  # (clock, idle seconds, own seconds) at the last look
        self.current = self.most
        # ``probe_in_two_calls``: a probe of all threads in two calls, the first of two batches
        # (to abort soon on a busy machine), the second the rest of the chunk (calls with a large
        # cost of their own: per-sample training's)
        self.probe_in_two_calls = probe_in_two_calls
        # ``retry_sooner``: a probe in which all threads lost to one by less than CLOSE_CALL (a
        # noisy minute, not a busy machine) is no reason to wait longer for the next one, and one
        # thread running slower than all threads last did makes a probe due (on one thread a
        # probe still waits for a spare core)
        self.retry_sooner = retry_sooner
        self.rate = {}  # thread count -> seconds per sample, latest measurement
        self.probe_every = 1
        self.since_probe = 0
        self.switches = 0  # how often the choice changed (read by tests)
        self.samples_on = {}
        if self.adaptive:
            self._spare_core()  # the first look: the fit's set-up is timed from here

    @property
    def adaptive(self):
        return self.most > 1 and not self.fixed

    def other(self, count):
        return 1 if count == self.most else self.most

    waited = 0.0  # seconds the calls spent waiting to start (``waiting``), left out of their timing

    @contextlib.contextmanager
    def waiting(self):
        """Within it, a call waits for something other than its work (the lock that lets one fit
        at a time into the parallel kernel under Numba's workqueue layer): that time is left out
        of the call's timing, so that a fit waiting for another's chunk does not take its thread
        count for a slow one."""
        tic = self.clock()
        try:
            yield
        finally:
            self.waited += self.clock() - tic

    def _timed(self, call, count, start, n_samples):
        waited, tic = self.waited, self.clock()
        n_done = call(count, start, n_samples)
        seconds = self.clock() - tic - (self.waited - waited)
        if self.samples_on is None:  # a chooser pickled before it counted
            self.samples_on = {}
        self.samples_on[count] = self.samples_on.get(count, 0) + n_done
        return n_done, seconds

    def run(self, n_samples, batch_size, call):
        """Train ``n_samples`` (one chunk) by calls ``call(count, start, n)`` -> samples done,
        each training the chunk's samples start .. start + n - 1 (whole batches, except at the
        chunk's end) on ``count`` threads; a call that does fewer than n stops the chunk (a
        non-finite loss). Returns the samples done."""
        if self.adaptive and batch_size > PROBE_SAMPLES and 2 * batch_size > n_samples:
            return self._run_whole(n_samples, batch_size, call)
        start = 0
        if self._probe_due(n_samples, batch_size):
            # the first chunk measures one thread first, then probes all threads; so does a
            # chunk after all threads slowed down: a moment's stall of the host (one chunk at
            # half speed) must not make one thread look faster than all of them
            if len(self.rate) < 2 or self._slowed:
                counts = [c for c in (1, self.most) if c not in self.rate or self._slowed]
            else:
                counts = [self.other(self.current)]
            self._slowed = False
            for count in counts:
                start, stopped = self._probe(count, start, n_samples, batch_size, call)
                if stopped:
                    return start
            self._choose(probed=True)
            if start == n_samples:  # a probe of all threads may take the whole chunk
                return start
        count = self.current
        if count > 1 and self.adaptive and 2 * self._probe_size(batch_size) > n_samples and self._no_core_spare():
            count = 1  # a chunk too small to probe: one thread while no core is spare
        n_done, seconds = self._timed(call, count, start, n_samples - start)
        self._record(count, n_done, seconds)
        return start + n_done

    def _no_core_spare(self):
        """Whether the latest look tells of no spare core (this one, or one of the last
        VERDICT_SECONDS when this one is too soon to tell). Chunks too small to split into probes
        (an epoch of fewer than 2 x PROBE_SAMPLES samples: a notebook's small experiment, or an
        epoch's end) were never probed and ran on all threads: beside a busy-loop process, 1,297
        against 198,158 samples/s on one thread (audit 34)."""
        spare = self._spare_core()
        if spare is None:
            spare = self._recent_verdict()
        return spare is False

    def _run_whole(self, n_samples, batch_size, call):
        """A chunk of one batch too large to split into probes (batch sizes over 4096 make a
        chunk each, full batch one an epoch): every chunk runs on one count, and the counts are
        compared across chunks, as probes compare them within one: one thread first, then all;
        then all threads only when clearly faster, looked at again after 1, 4, 16 ... chunks,
        at once when they slow down, and not while no core is spare."""
        count, probing = self.current, False
        spare = self._spare_core()  # looked at every chunk: over the last one
        if len(self.rate) < 2:
            count = 1 if 1 not in self.rate else self.most
            if count == self.most and spare is False:
                count = self.current = 1  # busy: all threads would be held up; look again next chunk
            probing = count != self.current or len(self.rate) == 0
        elif self.since_probe + 1 >= self.probe_every:
            other = self.other(self.current)
            if other != self.most or spare is True:
                count, probing = other, True
                self.since_probe = 0
        else:
            self.since_probe += 1
        n_done, seconds = self._timed(call, count, 0, n_samples)
        if n_done == n_samples == batch_size and seconds > 0:  # a whole batch: a speed to compare
            known = self.rate.get(count)
            per_sample = seconds / n_samples
            if count == self.current == self.most and known is not None and per_sample > SLOWDOWN * known:
                self.since_probe, self.probe_every = 0, 1  # slowed down: look at one thread next chunk
            self.rate[count] = per_sample
            if len(self.rate) == 2:
                self._choose(probed=probing)
        return n_done

    def _choose(self, probed):
        """The count for the next calls, from both counts' latest speeds: all threads must be
        clearly faster (wrongly chosen on a busy machine they run many times slower, while one
        thread chosen over threads less than MARGIN faster loses less than 5%). A switch is
        checked again soon; a probe that confirms the choice looks again later."""
        chosen = self.most if self.rate[self.most] * MARGIN < self.rate[1] else 1
        if chosen != self.current:
            self.current = chosen
            self.switches += 1
            self.probe_every = 1
        elif probed and not (self.retry_sooner and chosen == 1
                             and self.rate[self.most] < CLOSE_CALL * self.rate[1]):
            self.probe_every = min(4 * self.probe_every, MAX_PROBE_EVERY)

    def _probe_due(self, n_samples, batch_size):
        if not self.adaptive or 2 * self._probe_size(batch_size) > n_samples:
            return False  # one thread only, or too small to split: a warm-up, an epoch's end
        if len(self.rate) < 2:
            if not self.rate and self.current == self.most:
                spare = self._spare_core()
                if spare is None:
                    spare = self._recent_verdict()
                if spare is False:
                    self.current = 1  # busy while the fit set up: one thread until a core is spare
                    return False
                return True
            return self.current == self.most or self._spare_core() is True
        if self.since_probe + 1 >= self.probe_every:
            if self.current == 1 and self._spare_core() is not True:
                return False  # due, but the machine has no core to spare: look again next chunk
            self.since_probe = 0
            return True
        self.since_probe += 1
        return False

    def _spare_core(self):
        """Whether other processes left SPARE_CORE of a core beside this process's one since the
        last look: True or False, or None when it is too early to tell (the first look, or less
        than IDLE_WINDOW seconds since the last); True when the machine's times cannot be read."""
        idle = self.idle()
        if idle is None:
            return True
        now, own = self.clock(), self.own()
        if self._idle_mark is None or idle < self._idle_mark[1]:
            self._idle_mark = (now, idle, own)
            return None
        then, idle_then, own_then = self._idle_mark
        wall = now - then
        if wall < IDLE_WINDOW:
            return None
        others = others_cores(self.cpus, wall, idle - idle_then, own - own_then)
        spare = self.cpus - others - 1 >= SPARE_CORE
        self._idle_mark = (now, idle, own)
        _VERDICTS[self.clock] = (now, spare)
        return spare

    def _recent_verdict(self):
        """Whether a core was spare at the latest conclusive look in this process, if that was
        less than VERDICT_SECONDS ago; else None."""
        when, spare = _VERDICTS.get(self.clock, (None, None))
        return spare if when is not None and self.clock() - when < VERDICT_SECONDS else None

    @staticmethod
    def _probe_size(batch_size):
        return max(1, PROBE_SAMPLES // batch_size) * batch_size

    def _probe(self, count, start, n_samples, batch_size, call):
        """Train from ``start`` on ``count`` threads and record their speed; returns (where the
        probe ended, whether a call stopped the chunk)."""
        size = self._probe_size(batch_size)
        many = count > 1
        # one thread: PROBE_SAMPLES and no more; all threads: at least that and PROBE_SECONDS,
        # within the chunk, and no longer once clearly slower than one thread
        end = n_samples if many else start + size
        slowest = ABORT * self.rate[1] if many and 1 in self.rate else float("inf")
        # one thread in one call: it cannot be held up by another thread, and each call has a
        # cost of its own (about 60 us here, 1 us per sample in calls of two batches of 32)
        n = PROBE_BATCHES_PER_CALL * batch_size if many else size
        done, spent = start, 0.0
        while done < end:
            n = min(n, end - done)
            n_done, seconds = self._timed(call, count, done, n)
            done += n_done
            spent += seconds
            if n_done < n:
                return done, True
            trained = done - start
            if spent > slowest * trained + WAKE_SECONDS:
                _VERDICTS[self.clock] = (self.clock(), False)  # two threads held each other up
                break  # clearly slower: no need to measure it to the end
            if trained >= size and (not many or spent >= PROBE_SECONDS):
                break
            if many:
                n = end - done if self.probe_in_two_calls else 2 * n
        self.rate[count] = spent / (done - start)
        return done, False

    def _record(self, count, n_samples, seconds):
        """The current count trained ``n_samples`` in ``seconds``."""
        if n_samples < PROBE_SAMPLES or seconds <= 0:
            return  # too few samples to tell a speed: the call's own cost would dominate
        per_sample = seconds / n_samples
        known = self.rate.get(count)
        if count > 1 and known is not None and per_sample > SLOWDOWN * known:
            self.since_probe = self.probe_every  # the machine got busy: probe on the next chunk
            self.probe_every = 1
            self._slowed = True
        elif (self.retry_sooner and count == 1 and self.most in self.rate
              and per_sample > MARGIN * self.rate[self.most]):
            self.since_probe = self.probe_every  # all threads may be faster now: look (if a core is spare)
        self.rate[count] = per_sample
