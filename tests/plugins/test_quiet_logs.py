"""While `airflow dags test` waits out a retry, dag.test() logs "No tasks to run. unrunnable tasks"
once a second; the platform's filter keeps one line a minute, saying how many it held back."""

from __future__ import annotations

import inspect
import logging

import pytest

from mlplatform import quiet_logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged(caplog):
    clock = Clock()
    logger = logging.getLogger("test.quiet_logs")
    logger.addFilter(quiet := quiet_logs.RepeatedWaitFilter(clock=clock))
    caplog.set_level(logging.INFO, logger="test.quiet_logs")
    yield logger, clock, caplog
    logger.removeFilter(quiet)


def test_a_ten_minute_wait_logs_ten_lines_not_six_hundred(logged) -> None:
    logger, clock, caplog = logged
    for second in range(600):  # dag.test() polls once a second
        clock.now = float(second)
        logger.warning("No tasks to run. unrunnable tasks: %s", {"<TI ingest up_for_retry>"})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10, lines
    assert lines[0] == "No tasks to run. unrunnable tasks: {'<TI ingest up_for_retry>'}"
    assert "59 identical line(s) held back in the last 60s" in lines[1]


def test_other_lines_pass_and_end_the_wait(logged) -> None:
    logger, clock, caplog = logged
    logger.warning("No tasks to run. unrunnable tasks: %s", {"a"})
    clock.now = 1.0
    logger.warning("No tasks to run. unrunnable tasks: %s", {"a"})  # held back
    logger.info("Running task validate")
    clock.now = 2.0
    logger.warning("No tasks to run. unrunnable tasks: %s", {"b"})  # a new wait: shown
    assert [r.getMessage() for r in caplog.records] == [
        "No tasks to run. unrunnable tasks: {'a'}",
        "Running task validate",
        "No tasks to run. unrunnable tasks: {'b'}",
    ]


def test_importing_the_platform_quiets_the_logger_airflow_really_uses() -> None:
    """The filter sits on the logger dag.test() writes that line with (this Airflow's source)."""
    from airflow.sdk.definitions import dag

    import mlplatform  # noqa: F401  (every DAG module imports it)

    source = inspect.getsource(dag)
    assert f'log.warning("{quiet_logs.WAITING}: %s"' in source
    assert dag.log.name == quiet_logs.DAG_TEST_LOGGER
    assert [f for f in dag.log.filters if isinstance(f, quiet_logs.RepeatedWaitFilter)]
    quiet_logs.install()  # idempotent
    assert len([f for f in dag.log.filters if isinstance(f, quiet_logs.RepeatedWaitFilter)]) == 1
