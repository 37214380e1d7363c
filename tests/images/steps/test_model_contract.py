"""Every installed model (entry point group ``mlplatform.models``) against the platform's contract:
its declaration is consistent, and its hooks run end to end on its own tiny example data
(model_steps.testing.run_hooks: raw checks, point in time, its suite, one epoch of its network,
its CRM records). A new model is covered here without writing a test."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from model_steps.model_loader import ENTRY_POINT_GROUP, ModelRef, check_model
from model_steps.testing import hook_run_problems, run_hooks

pytest.importorskip("tensorflow")
REPO = Path(__file__).resolve().parents[3]
MODELS = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def dag_defaults(name: str) -> dict:
    """The ``defaults`` the model's DAG module layers for every customer, read from the module's
    literal spec (the workload has no Airflow to import the module with)."""
    module = REPO / "dags" / f"{name}.py"
    if not module.exists():
        return {}
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "register_pipeline":
            return ast.literal_eval(node.args[1]).get("defaults", {})
    return {}


@pytest.fixture(scope="module")
def spark():
    from model_steps.testing import local_spark

    return local_spark()


@pytest.mark.parametrize("entry", MODELS, ids=lambda ep: ep.name)
def test_model_hooks_run_end_to_end_on_its_example_data(entry, spark) -> None:
    model = check_model(entry.load(), ModelRef(entry.value))
    run = run_hooks(model, spark, config=dag_defaults(model.name))
    assert hook_run_problems(model, run) == []
    assert len(run.training) > 100 and len(run.population) >= len(run.training)
