"""A load that keeps one core busy part of the time: ON seconds spinning, then OFF asleep, for ever.

    python bench/experiments/duty_load.py ON OFF &

A bursty neighbour (a shell, an editor, a build's short jobs) rather than ``bench/test_busy.py``'s
saturated core: beside it two threads are sometimes held up, sometimes not. Session 69 ran
``auto_widths.py`` beside it to see whether the per-sample chooser's close-call rule (a probe again
every chunk while two threads lose by less than 10%) costs anything there.
"""

import sys
import time

on, off = float(sys.argv[1]), float(sys.argv[2])
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < on:
        pass
    time.sleep(off)
