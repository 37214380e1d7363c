"""A model says whether its positive outcome is good or bad, and the monitor's uplift verdict
follows it. Checked on the simulator with the true effect known: the VIP treatment multiplies a
diner's order rate (datagen.VIP_ORDER_RATE_BOOST), so treated diners churn less (churn = no order
in the window). For a churn model (positive outcome bad) that campaign is a ``win``; read as if
label 1 were good it would be called ``harm``, which is what the platform did before."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from mlmodels.restaurant_chain import datagen
from model_steps.monitoring import uplift

DINERS, SEED, WINDOW, HISTORY = 4000, 5, 28, 60


def churned_by_arm() -> tuple[np.ndarray, np.ndarray]:
    """Churn (no order in the window) of a random half of the active diners given the VIP
    treatment (treated) and of the other half (control), from the simulator's own outcomes."""
    start = np.datetime64(datagen.DEFAULT_CUTOFF - dt.timedelta(days=HISTORY))
    end = np.datetime64(datagen.DEFAULT_DATA_DATE)
    h = datagen._hidden_state(np.random.default_rng(SEED), DINERS, start, end)
    active = h["diner_ids"][(h["churn_at"] > end) & (h["signup"] <= end)]
    rng = np.random.default_rng(0)
    treated = set(rng.choice(active, size=len(active) // 2, replace=False))
    control = [d for d in active if d not in treated]
    orders = datagen.generate_outcomes(
        DINERS, days=WINDOW, seed=SEED, history_days=HISTORY, vip_treated=sorted(treated)
    )["orders"]
    ordered = set(orders["diner_id"])
    churn = {d: float(d not in ordered) for d in active}
    return np.array([churn[d] for d in treated]), np.array([churn[d] for d in control])


def test_a_campaign_that_reduces_churn_is_a_win_for_a_churn_model() -> None:
    treated, control = churned_by_arm()
    assert datagen.VIP_ORDER_RATE_BOOST > 1  # the true effect: treated order more, churn less
    assert treated.mean() < control.mean()
    churn = uplift(treated, control, min_arm=50, confidence=0.95, positive_outcome="bad")
    assert churn["ci_high"] < 0, churn  # the treated arm churns less, beyond the interval
    assert churn["verdict"] == "win" and churn["positive_outcome"] == "bad"
    as_if_good = uplift(treated, control, min_arm=50, confidence=0.95, positive_outcome="good")
    assert as_if_good["verdict"] == "harm"
    # and the same campaign measured on "ordered again" (positive outcome good) is a win too
    ordered = uplift(1 - treated, 1 - control, min_arm=50, confidence=0.95)
    assert ordered["verdict"] == "win"
    print(json.dumps(churn))


@pytest.mark.parametrize(("outcome", "expected"), [("good", "harm"), ("bad", "win")])
def test_the_verdict_follows_the_declared_direction(outcome: str, expected: str) -> None:
    lower = uplift(np.zeros(100), np.ones(100) * 0.5 + np.arange(100) % 2 * 0.1, min_arm=10,
                   confidence=0.95, positive_outcome=outcome)  # fmt: skip
    assert lower["verdict"] == expected


def test_a_model_declares_its_direction_and_a_wrong_one_is_refused() -> None:
    import dataclasses

    from mlmodels.customer_propensity import MODEL
    from model_steps.contract import UsageError
    from model_steps.model_loader import ModelRef, check_model

    assert MODEL.positive_outcome == "good"  # a conversion is good
    with pytest.raises(UsageError, match="positive_outcome 'up'"):
        check_model(dataclasses.replace(MODEL, positive_outcome="up"), ModelRef("mlmodels.x"))
