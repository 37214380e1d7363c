"""Pipeline specs: layering, and errors that name the file, the field and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlplatform.spec import PipelineSpecError, parse_pipeline, resolve_customers

BASE: dict[str, Any] = {
    "name": "churn_model",
    "model": "mlmodels.customer_propensity",
    "task": "binary_classification",
    "owner": "retention-ml",
    "description": "Churn propensity.",
    "steps": {"ingest": {}, "train": {"gpu": 2}},
    "defaults": {"training": {"epochs": 5}},
    "tiers": {
        "basic": {},
        "gold": {"training": {"epochs": 20}, "resources": {"train": {"gpu": 4}}},
    },
    "customers": [
        {"id": "alpha-co", "tier": "basic"},
        {"id": "beta-co", "tier": "gold", "settings": {"training": {"learning_rate": 0.01}}},
    ],
}


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


def problems(spec: dict[str, Any]) -> str:
    with pytest.raises(PipelineSpecError) as err:
        resolve_customers(parse_pipeline(spec, "dags/churn.py"), "dags/churn.py")
    return str(err.value)


def test_layers_apply_defaults_then_tier_then_customer() -> None:
    alpha, beta = resolve_customers(parse_pipeline(BASE, "dags/churn.py"), "dags/churn.py")
    assert alpha.settings.training.epochs == 5
    assert alpha.profiles["train"].gpu == 2
    assert beta.settings.training.epochs == 20
    assert beta.settings.training.learning_rate == 0.01
    assert beta.profiles["train"].gpu == 4
    assert beta.profiles["ingest"].gpu == 0
    assert beta.dag_id == "churn_model__beta-co"


@pytest.mark.parametrize(
    "bad_id", ["Acme", "a", "acme_foods", "acme-", "1acme", "acme foods", "x" * 40, "../etc"]
)
def test_customer_id_is_validated_strictly(bad_id: str) -> None:
    spec = spec_with(customers=[{"id": bad_id, "tier": "basic"}])
    message = problems(spec)
    assert "dags/churn.py: customers[0]" in message
    assert f"customer id {bad_id!r} is not allowed" in message
    assert "lowercase letters" in message


def test_negative_memory_names_the_step_and_field() -> None:
    message = problems(spec_with(steps={"ingest": {"memory": "-4Gi"}}))
    assert "dags/churn.py: steps.ingest.memory" in message
    assert "positive Kubernetes quantity" in message


def test_unknown_step_lists_the_allowed_ones() -> None:
    message = problems(spec_with(steps={"ingest": {}, "deploy": {}}))
    assert "steps.deploy" in message
    assert "'ingest', 'validate', 'train', 'evaluate', 'score' or 'publish'" in message


def test_typo_in_settings_is_an_error_not_a_silent_default() -> None:
    spec = spec_with(customers=[{"id": "alpha-co", "tier": "basic", "settings": {"trainng": {}}}])
    message = problems(spec)
    assert "customers[0] (alpha-co).settings.trainng: unknown field" in message


def test_bad_value_in_a_tier_names_customer_and_merge() -> None:
    spec = spec_with(tiers={"basic": {"training": {"epochs": 0}}, "gold": {}})
    message = problems(spec)
    assert "customers[0] (alpha-co).settings.training.epochs" in message
    assert "greater than 0" in message
    assert "tier 'basic'" in message


def test_unknown_tier_and_duplicate_customer() -> None:
    assert "declared tiers: basic, gold" in problems(
        spec_with(customers=[{"id": "alpha-co", "tier": "platinum"}])
    )
    assert "appears more than once" in problems(
        spec_with(customers=[{"id": "alpha-co", "tier": "basic"}] * 2)
    )


def test_gpu_outside_gpu_pool_is_rejected() -> None:
    message = problems(spec_with(steps={"score": {"gpu": 1, "node_pool": "cpu"}}))
    assert "steps.score: gpu: 1 needs node_pool 'gpu'" in message


def test_all_problems_are_reported_at_once() -> None:
    spec = spec_with(owner="Retention ML", customers=[{"id": "A", "tier": "nope"}])
    message = problems(spec)
    assert "owner" in message and "customers[0]" in message


def test_customer_resource_override_for_missing_step() -> None:
    spec = spec_with(
        customers=[{"id": "alpha-co", "tier": "basic", "settings": {"resources": {"score": {}}}}]
    )
    assert "resources.score: the pipeline has no score step" in problems(spec)


def test_an_unknown_top_level_field_does_not_hide_the_customers_problems() -> None:
    """Every problem at once: a typo at the top and a bad setting of a customer, together."""
    spec = spec_with(shedule="@daily")
    spec["customers"] = [{"id": "beta-co", "tier": "basic",
                          "settings": {"training": {"epochs": 0}}}]  # fmt: skip
    with pytest.raises(PipelineSpecError) as err:
        parse_pipeline(spec, "dags/churn.py")
    message = str(err.value)
    assert "shedule: unknown field" in message
    assert "customers[0] (beta-co).settings.training.epochs" in message


def test_a_gate_metric_of_another_task_is_refused() -> None:
    spec = spec_with(task="regression", defaults={"gate": {"metric": "roc_auc"}})
    with pytest.raises(PipelineSpecError, match=r"gate: 'roc_auc' is not a regression metric"):
        resolve_customers(parse_pipeline(spec, "dags/churn.py"), "dags/churn.py")


def test_a_model_path_of_the_wrong_form_is_refused() -> None:
    with pytest.raises(PipelineSpecError, match=r"model: String should match pattern"):
        parse_pipeline(spec_with(model="models/churn.py"), "dags/churn.py")


def test_extra_steps_must_follow_a_declared_step_and_not_shadow_a_platform_one() -> None:
    wrong_anchor = spec_with(extra_steps={"report": {"after": "publish"}})
    assert "extra_steps.report.after: 'publish' is not a step declared before it" in problems(
        wrong_anchor
    )
    shadow = spec_with(extra_steps={"train": {"after": "ingest"}})
    assert "not one of the platform's" in problems(shadow)
    ok = spec_with(extra_steps={"report": {"after": "train", "runs_in": "score",
                                           "resources": {"memory": "2Gi"}}})  # fmt: skip
    (alpha, _beta) = resolve_customers(parse_pipeline(ok, "dags/churn.py"), "dags/churn.py")
    assert alpha.kind_of("report") == "score" and alpha.profiles["report"].memory == "2Gi"


@pytest.mark.parametrize(
    ("campaign", "field"),
    [
        ({"id": "c", "variants": []}, "crm.campaign.variants"),
        ({"id": "c", "variants": [{"id": "a"}, {"id": "a"}]}, "variant ids must be unique"),
        ({"id": "c", "variants": [{"id": "A b"}]}, "crm.campaign.variants[0].id"),
        ({"id": "c", "variants": [{"id": "a", "cost": -1}]}, "crm.campaign.variants[0].cost"),
        ({"id": "c", "variants": [{"id": "a"}], "policy": {"kind": "ucb"}}, "crm.campaign.policy"),
        ({"id": "c", "variants": [{"id": "a"}], "reward": "clicks"}, "crm.campaign.reward"),
    ],
)
def test_a_malformed_variant_declaration_is_refused_naming_the_file_and_field(
    campaign: dict[str, Any], field: str
) -> None:
    text = problems(spec_with(defaults={"crm": {"campaign": campaign}}))
    assert "dags/churn.py" in text and field in text
