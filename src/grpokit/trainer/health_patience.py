"""How long a health check waits, fitted to the run: a default patience never outlasts a short run.

The defaults (`grpokit.config.health`: zero spread 50 logs, truncation 20, ...) suit an overnight run; a
12-step run would end before any of them ran out. A patience the config does not set is therefore at
most a quarter of the run's logs, and at least `MIN_SCALED_PATIENCE`. One the config sets is kept as it is.
"""

from __future__ import annotations

import math

PATIENCE_SHARE_OF_RUN = 4  # a default patience is at most a quarter of the run's logs ...
MIN_SCALED_PATIENCE = 3  # ... and at least this many logs, so one odd log never fires a check


def scaled_patience(default: int, logs_in_run: int | None) -> int:
    """A default `patience` fitted to a run of `logs_in_run` logs, so a 12-step run is still told.

    >>> scaled_patience(50, 12), scaled_patience(50, 400), scaled_patience(20, 2), scaled_patience(20, None)
    (3, 50, 3, 20)
    """
    if not logs_in_run:
        return default
    return min(default, max(MIN_SCALED_PATIENCE, math.ceil(logs_in_run / PATIENCE_SHARE_OF_RUN)))


def logs_in_run(max_steps: int, logging_strategy: str, logging_steps: float) -> int | None:
    """The training logs a run of `max_steps` writes (the last step is always logged); None when unknown."""
    if max_steps <= 0 or str(logging_strategy).split(".")[-1].lower() != "steps" or logging_steps <= 0:
        return None
    every = logging_steps if logging_steps >= 1 else max(math.ceil(max_steps * logging_steps), 1)  # a ratio of the run
    return math.ceil(max_steps / every)
