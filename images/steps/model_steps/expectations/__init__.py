"""Expectation suites, one reviewable JSON file per pipeline, in Great Expectations' own suite format.

``<pipeline>.json`` validates the feature table that the ingest step writes for that pipeline; a
pipeline without its own file uses ``customer_propensity.json`` (the suite of the feature table this
package builds), and ``STEP_CONFIG`` ``validation.suite`` can name another file. Each expectation
carries ``severity`` (``critical`` fails the task, ``warning`` passes it flagged) and ``meta.why``.
Bounds that differ per platform customer are ``{"$PARAMETER": name}`` placeholders, filled from
STEP_CONFIG at run time (see ``suite_parameters`` in :mod:`model_steps.steps.validate`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

DEFAULT_SUITE = "customer_propensity"


def available() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".json")
    )


def load_suite(pipeline: str, override: str | None = None) -> tuple[str, dict[str, Any]]:
    """(suite file name, suite JSON) for ``pipeline``."""
    from model_steps.contract import UsageError

    names = available()
    name = override or (pipeline if pipeline in names else DEFAULT_SUITE)
    if name not in names:
        raise UsageError(
            f"expectation suite {name!r} not found: model_steps/expectations/ has "
            f"{', '.join(names)}"
        )
    text = resources.files(__name__).joinpath(f"{name}.json").read_text()
    return f"{name}.json", json.loads(text)


def without_column(suite: dict[str, Any], column: str) -> dict[str, Any]:
    """The suite for a table that lacks ``column`` (the population has no label yet): expectations
    on that column are dropped, and it is taken out of column lists and sets."""
    kept = []
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        if kwargs.get("column") == column:
            continue
        lists = {
            k: [c for c in v if c != column]
            for k, v in kwargs.items()
            if k in ("column_list", "column_set") and isinstance(v, list)
        }
        kept.append({**expectation, "kwargs": {**kwargs, **lists}} if lists else expectation)
    return {**suite, "name": f"{suite['name']}.without_{column}", "expectations": kept}
