"""What a step pays before its work: the interpreter, the first import of a heavy library, a Spark JVM.

On small data most of a step's wall time is start-up, not work, and the two call for different
fixes (fewer processes, or a faster step). So the CLI splits every step's time in its last log line
(``step train done in 41.0s: start-up 13.2s (interpreter 1.4s, import tensorflow 9.1s, ...), work
27.8s``), and ``make run``'s summary shows the split per step.

Heavy imports are timed by a meta-path finder that wraps the loader of a few top-level packages
(:data:`WATCHED`) the first time they are imported, wherever that happens (a step body, a model's
own code); an import nested in another watched one (horovod importing tensorflow) counts once, in
the outer one. Nothing is imported early: a step that never touches TensorFlow pays nothing for it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

WATCHED = frozenset(
    {"tensorflow", "pyspark", "mlflow", "great_expectations", "horovod", "torch", "sklearn"}
)
_costs: dict[str, float] = {}
_depth = 0


@contextmanager
def paying(what: str) -> Iterator[None]:
    """Count the block's wall time as start-up named ``what`` (nested blocks count once)."""
    global _depth
    _depth += 1
    started = time.monotonic()
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _costs[what] = _costs.get(what, 0.0) + time.monotonic() - started


def since_process_start() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat against CLOCK_BOOTTIME)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of proc(5), counted from field 3
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, now - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _ImportTimer(importlib.abc.MetaPathFinder):
    """Times the first import of each watched top-level package."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in WATCHED or name in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with paying(f"import {name}"):
                execute(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def watch_imports() -> None:
    """Start timing heavy imports (idempotent; the CLI calls it first thing)."""
    if not any(isinstance(finder, _ImportTimer) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportTimer())


def describe(total_s: float, interpreter_s: float | None) -> str:
    """``41.0s: start-up 13.2s (interpreter 1.4s, import tensorflow 9.1s), work 27.8s``."""
    parts = dict(_costs)
    if interpreter_s is not None:
        parts = {"interpreter": interpreter_s, **parts}
    wall = total_s + (interpreter_s or 0.0)
    startup = sum(parts.values())
    detail = ", ".join(f"{what} {seconds:.1f}s" for what, seconds in parts.items())
    return (
        f"{wall:.1f}s: start-up {startup:.1f}s"
        f"{f' ({detail})' if detail else ''}, work {max(0.0, wall - startup):.1f}s"
    )
