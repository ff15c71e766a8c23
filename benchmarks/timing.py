"""Side-by-side timing: interleaved repetitions, medians, no cherry-picking.

Each candidate is a zero-argument callable that returns only when its result
is computed (it calls `.numpy()` or is a synchronous CPU call). All candidates
of one comparison are warmed up (tracing, XLA compilation) and calibrated
first; then every repetition times each of them once, in a rotating order, so
that load from other processes and CPU frequency drift hit all alike.

Each timing starts after a pause (`settle_seconds`), so that the threads the
previous candidate left spinning have gone idle: torch's OpenMP workers keep
spinning for several milliseconds after a call, and on 2 cores they take one
from whatever runs next (a batch-64 LSTM call of the native loops took 20.5
ms right after a torch call, 14.1 ms 10 ms later). A candidate's own calls
stay back to back, so its threads are as warm as they are in a loop.
"""

import statistics
import time


def _calls_for(function, min_seconds):
    """How many back-to-back calls make one repetition last about `min_seconds`."""
    start = time.perf_counter()
    function()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(min_seconds / once))


def _seconds_per_call(function, calls):
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


# Longer than torch's OpenMP workers spin after a call (a 10 ms pause removed their effect).
SETTLE_SECONDS = 0.05


def interleaved(candidates, repetitions=5, min_seconds=0.2, warmup=2,
                settle_seconds=SETTLE_SECONDS):
    """Median seconds per call of each candidate, measured side by side.

    Args:
        candidates: {name: callable}.
        repetitions: timed rounds; each round times every candidate once.
        min_seconds: target duration of one timing (calls are repeated to reach it).
        warmup: untimed calls per candidate before calibration.
        settle_seconds: pause before each timing, for other candidates' threads to idle.

    Returns:
        {name: {"seconds": median, "samples": [per-round seconds per call], "calls": n}}.
    """
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    calls = {name: _calls_for(candidates[name], min_seconds) for name in names}
    samples = {name: [] for name in names}
    for round_index in range(repetitions):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle_seconds)
            samples[name].append(_seconds_per_call(candidates[name], calls[name]))
    return {name: {"seconds": statistics.median(samples[name]), "samples": samples[name],
                   "calls": calls[name]} for name in names}
