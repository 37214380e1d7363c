"""Every installed model (entry point group ``mlplatform.models``) against the platform's contract:
its declaration is consistent, and its hooks run end to end on its own tiny example data
(model_steps.testing.run_hooks: raw checks, point in time, its suite, one epoch of its network,
its CRM records). A new model is covered here without writing a test."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from model_steps.model_loader import ENTRY_POINT_GROUP, ModelRef, check_model
from model_steps.testing import hook_run_problems, run_hooks

pytest.importorskip("tensorflow")
MODELS = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


@pytest.fixture(scope="module")
def spark():
    from model_steps.testing import local_spark

    return local_spark()


@pytest.mark.parametrize("entry", MODELS, ids=lambda ep: ep.name)
def test_model_hooks_run_end_to_end_on_its_example_data(entry, spark) -> None:
    model = check_model(entry.load(), ModelRef(entry.value))
    run = run_hooks(model, spark)  # with the settings its DAG module layers (dag_settings)
    assert hook_run_problems(model, run) == []
    assert len(run.training) > 100 and len(run.population) >= len(run.training)
    if model.clicks is not None:  # a click-rewarded campaign's reward: keys of the population
        assert 0 < run.clicks[model.key].nunique() < len(run.population)
        assert set(run.clicks[model.key]) <= set(run.population[model.key])
