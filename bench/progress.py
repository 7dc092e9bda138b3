"""Progress bars that suit where they are written.

On a terminal a bar redraws in place, so a redraw per step costs nothing. In a log (CI,
``nohup``, a Slurm job's output file) every redraw is one more line: a bar per training
step would write a line per step. There a bar redraws at most every ``LOG_INTERVAL_S``
seconds, so a long run still shows it is alive. ``TQDM_DISABLE=1`` still silences them.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

TTY_INTERVAL_S = 0.1  # tqdm's default
LOG_INTERVAL_S = 60.0


def interval(stream=None) -> float:
    """Seconds between redraws on ``stream`` (default stderr, where tqdm writes)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return TTY_INTERVAL_S if isatty is not None and isatty() else LOG_INTERVAL_S


def bar(total: int, desc: str) -> tqdm:
    """A transient bar over ``total`` steps; callers update it only with values already on
    the host (reading a loss on the GPU to show it would stall the device every step)."""
    every = interval()
    # maxinterval too: tqdm's monitor thread otherwise forces a redraw every 10 s
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=every,
                maxinterval=max(every, 10.0))
