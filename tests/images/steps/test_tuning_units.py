"""Search-space sampling and a model's declared space, without TensorFlow: the same seed gives the
same trials (a retry repeats them), trial 0 is the configured settings, samples stay in bounds, and
a wrong space is an error naming the model's field."""

from __future__ import annotations

import math

import pytest

from mlmodels.customer_propensity import MODEL as PROPENSITY
from mlmodels.next_spend import MODEL as SPEND
from mlplatform_contract.settings import CustomerSettings, TuningSettings
from model_steps.model_loader import ModelRef, check_model
from model_steps.search_space import (
    Choice,
    IntRange,
    LogUniform,
    Uniform,
    apply,
    sample_trials,
    space_problems,
)

SPACE = {
    "training.learning_rate": LogUniform(1e-4, 1e-2),
    "training.batch_size": Choice((128, 256, 512)),
    "training.warmup_epochs": IntRange(0, 4, 2),
    "model.dropout": Uniform(0.0, 0.3),
    "model.hidden_units": Choice(([64, 32], [128, 64])),
}


def _trials(seed: int = 0, customer: str = "acme-foods", n: int = 8) -> list[dict]:
    baseline = {"training.learning_rate": 0.003, "model.dropout": 0.1}
    return sample_trials(SPACE, n, seed=seed, pipeline="p", customer=customer, baseline=baseline)


def test_the_same_seed_gives_the_same_trials() -> None:
    assert _trials() == _trials()
    assert _trials(seed=1) != _trials()
    assert _trials(customer="bella-pasta") != _trials()  # each customer searches its own draws
    assert _trials(n=12)[:8] == _trials(n=8)  # a larger budget extends, never reshuffles


def test_trial_zero_is_the_configured_settings_and_samples_stay_in_bounds() -> None:
    trials = _trials(n=40)
    assert trials[0] == {"training.learning_rate": 0.003, "model.dropout": 0.1}
    sampled = trials[1:]
    assert all(1e-4 <= t["training.learning_rate"] <= 1e-2 for t in sampled)
    assert all(t["training.batch_size"] in (128, 256, 512) for t in sampled)
    assert {t["training.warmup_epochs"] for t in sampled} <= {0, 2, 4}
    assert all(0.0 <= t["model.dropout"] <= 0.3 for t in sampled)
    assert {tuple(t["model.hidden_units"]) for t in sampled} == {(64, 32), (128, 64)}
    # log-uniform: about as many draws per decade
    below = sum(t["training.learning_rate"] < 1e-3 for t in sampled)
    assert 8 <= below <= 31, below


def test_a_trial_is_applied_over_the_settings_and_validated_like_them() -> None:
    config = {"training": {"epochs": 5, "learning_rate": 0.003}, "model": {"top_fraction": 0.2}}
    merged = apply(config, {"training.learning_rate": 0.0005, "model.dropout": 0.2})
    assert merged["training"] == {"epochs": 5, "learning_rate": 0.0005}
    assert merged["model"] == {"top_fraction": 0.2, "dropout": 0.2}
    assert config["training"]["learning_rate"] == 0.003  # the step's config is not changed
    assert CustomerSettings.model_validate(merged).training.learning_rate == 0.0005


def test_the_example_models_declare_spaces_their_settings_accept() -> None:
    for model in (PROPENSITY, SPEND):
        assert model.search_space, model.name
        assert space_problems(model.search_space, set(model.settings.model_fields)) == []
        check_model(model, ModelRef(f"mlmodels.{model.name}", model.task))
        for params in sample_trials(model.search_space, 6, seed=3, pipeline=model.name,
                                    customer="acme-foods")[1:]:  # fmt: skip
            model_part = {k.removeprefix("model."): v for k, v in params.items() if "model." in k}
            model.settings.model_validate(model_part)


def test_a_wrong_space_names_the_field() -> None:
    problems = space_problems(
        {"training.epochs": IntRange(1, 5), "model.widht": Choice((1,)),
         "model.dropout": LogUniform(0.0, 0.3), "lr": Uniform(1, 0)},
        {"dropout", "width"},
    )  # fmt: skip
    assert any(p.startswith("search_space.training.epochs: training.epochs is not tunable")
               for p in problems)  # fmt: skip
    assert "search_space.model.widht: the model's settings have no field 'widht'" in problems
    assert "search_space.model.dropout: a log-uniform range must be positive" in problems
    assert any(p.startswith("search_space.lr: name a setting as") for p in problems)
    assert "search_space.lr: low must be below high (1, 0)" in problems


@pytest.mark.parametrize(
    ("epochs", "halving", "rungs"),
    [(9, {}, [9]), (9, {"enabled": True, "rung_fraction": 0.34}, [4, 9]),
     (1, {"enabled": True}, [1]), (4, {"enabled": True, "rung_fraction": 0.1}, [1, 4])],
)  # fmt: skip
def test_rungs_end_at_the_fraction_of_the_epochs(epochs, halving, rungs) -> None:
    assert TuningSettings.model_validate({"halving": halving}).rung_epochs(epochs) == rungs
    assert all(isinstance(r, int) and r >= 1 for r in rungs) and not math.isnan(rungs[-1])
