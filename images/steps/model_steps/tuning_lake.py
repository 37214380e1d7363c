"""Where the tuning stage keeps its files, and the selection the final train step reads.

``<lake>/tuning/<pipeline>/customer=<c>/run=<key>/``: ``plan.json``,
``trials/<name>/rung=<r>.json`` (each trial's result), ``halving.json``, ``selected.json``.
Below both the tuning steps (model_steps/steps/tuning.py, which write them) and the train step
(which reads the selection), so neither step imports the other for it.
"""

from __future__ import annotations

from mlplatform_contract.results import SelectResult
from model_steps import lake
from model_steps.contract import StepContext, StepError

SELECTION_FILE = "selected.json"


def tuning_path(ctx: StepContext, *parts: str) -> str:
    return ctx.layout.tuning(*parts)


def result_uri(ctx: StepContext, trial: str, rung: int) -> str:
    return tuning_path(ctx, "trials", trial, f"rung={rung}.json")


def read_selection(ctx: StepContext) -> SelectResult:
    """What the final train step trains with (tuning.enabled): the select step's commit."""
    uri = tuning_path(ctx, SELECTION_FILE)
    if not lake.exists(uri):
        raise StepError(f"tuning.enabled, but no selection at {uri}: the select step must run "
                        "before train")  # fmt: skip
    return SelectResult.model_validate(lake.read_json(uri))
