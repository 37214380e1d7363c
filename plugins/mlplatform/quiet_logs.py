"""Quiet logs while a local ``airflow dags test`` waits on a retry.

``dag.test()`` (what ``airflow dags test``, and so ``make run``, runs) polls once a second while a
failed task waits out its retry delay, and logs "No tasks to run. unrunnable tasks: …" on every
poll: about 400 identical lines in a ten-minute failing run, burying the step's own error. This
filter on that logger lets the first line through, then one a minute that says how many identical
lines it held back; every other line passes untouched. Installed when the platform package is
imported (every DAG module imports it), so any ``airflow dags test`` of a platform DAG is quiet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DAG_TEST_LOGGER = (
    "airflow.sdk.definitions.dag"  # where dag.test() logs (logging.getLogger(__name__))
)
WAITING = "No tasks to run. unrunnable tasks"
EVERY_S = 60.0


class RepeatedWaitFilter(logging.Filter):
    """One "No tasks to run" line a minute instead of one a second."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self.last: float | None = None
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(WAITING):
            self.last, self.held = None, 0  # the run moved on: the next wait starts afresh
            return True
        now = self.clock()
        if self.last is not None and now - self.last < self.every_s:
            self.held += 1
            return False
        if self.held:
            record.msg = (
                f"{record.msg} (still waiting, probably on a retry's delay: {self.held} identical "
                f"line(s) held back in the last {now - self.last:.0f}s)"
            )
        self.last, self.held = now, 0
        return True


def install() -> None:
    """Add the filter to dag.test()'s logger once per process."""
    logger = logging.getLogger(DAG_TEST_LOGGER)
    if not any(isinstance(f, RepeatedWaitFilter) for f in logger.filters):
        logger.addFilter(RepeatedWaitFilter())
