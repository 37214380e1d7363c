"""docs/step-results.md is what the step result models say (tools/step_results_doc.py), and the
models' examples are valid results of their steps."""

from __future__ import annotations

import sys

from conftest import REPO

from mlplatform_contract.results import EXAMPLES, RESULTS, parse_result

sys.path.insert(0, str(REPO / "tools"))
import step_results_doc


def test_the_page_is_generated_from_the_models() -> None:
    assert step_results_doc.main(["--check"]) == 0, "run: python tools/step_results_doc.py"
    text = step_results_doc.DOC.read_text()
    for step, model in RESULTS.items():
        assert f"`{step}`" in text and model.__name__ in text
    assert "| `failed_records` | int | mlops_records_failed |" in text


def test_every_example_round_trips_through_xcom_json() -> None:
    for step, result in EXAMPLES.items():
        assert parse_result(step, result.to_xcom()) == result, step
