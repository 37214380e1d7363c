"""A run's data date: what the step argv says for scheduled, manual and parameterised runs."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from mlplatform.render import render_context

MODULE = textwrap.dedent(
    '''
    """Airflow DAG module (DagBag's safe mode skips files without these two words)."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {
        "name": "landing", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "growth-ml", "description": "Data date rendering.",
        "schedule": "0 5 * * *",
        "steps": {"ingest": {}, "validate": {}},
        "tiers": {"standard": {}},
        "customers": [
            {"id": "daily-drops", "tier": "standard"},
            {"id": "late-drops", "tier": "standard", "settings": {"data": {"landing_delay_days": 3}}},
        ],
    })
    '''
)
DUE = dt.datetime(2026, 7, 2, 5, tzinfo=dt.UTC)


def _data_date(task, **context_changes) -> str:
    context = render_context(task)
    context["dag_run"].run_after = DUE
    context.update({"data_interval_end": DUE, **context_changes})
    task.render_template_fields(context)
    return task.arguments[task.arguments.index("--data-date") + 1]


@pytest.fixture
def dags(dags_folder, dagbag, runtime):
    runtime("local")
    bag = dagbag(dags_folder({"landing.py": MODULE}, with_project=False))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


def test_scheduled_run_uses_the_last_day_that_has_landed(dags) -> None:
    assert _data_date(dags["landing__daily-drops"].get_task("ingest")) == "2026-07-01"
    assert _data_date(dags["landing__late-drops"].get_task("ingest")) == "2026-06-29"


def test_manual_run_without_a_data_interval_counts_from_when_it_was_triggered(dags) -> None:
    task = dags["landing__late-drops"].get_task("validate")
    assert _data_date(task, data_interval_end=None) == "2026-06-29"


def test_data_date_param_wins(dags) -> None:
    task = dags["landing__late-drops"].get_task("ingest")
    params = {"data_date": "2026-06-15", "force_promote": False}
    assert _data_date(task, params=params) == "2026-06-15"


def test_landing_delay_is_validated_and_documented(dags_folder, dagbag, runtime) -> None:
    runtime("local")
    bad = MODULE.replace('"landing_delay_days": 3', '"landing_delay_days": -1')
    bag = dagbag(dags_folder({"landing.py": bad}, with_project=False))
    (error,) = bag.import_errors.values()
    assert "data.landing_delay_days" in error and "greater than or equal to 0" in error
