"""The gate's metrics and policy on small arrays (the evaluate step wraps these with MLflow I/O)."""

from __future__ import annotations

import numpy as np
import pytest

from model_steps import gate

GATE = {"metric": "roc_auc", "min_improvement": 0.01, "thresholds": {"roc_auc": 0.6, "brier": 0.2},
        "on_fail": "score_with_champion"}  # fmt: skip


def m(auc: float, brier: float = 0.05) -> dict[str, float]:
    return {"roc_auc": auc, "brier": brier, "pr_auc": 0.3, "log_loss": 0.2, "lift_top_decile": 3.0}


def test_metrics_on_a_known_ranking() -> None:
    y = np.array([0, 0, 1, 0, 1, 0, 0, 0, 0, 1] * 10)
    perfect = y + np.linspace(0, 0.1, len(y))
    out = gate.metrics("binary_classification", y, perfect / perfect.max())
    assert out["roc_auc"] == 1.0 and out["pr_auc"] == pytest.approx(1.0)
    assert out["lift_top_decile"] == pytest.approx(1 / 0.3)
    random = gate.metrics("binary_classification", y, np.full(len(y), 0.3))
    assert random["roc_auc"] == 0.5 and random["lift_top_decile"] == pytest.approx(1.0, abs=0.7)


def test_first_run_without_champion_promotes() -> None:
    d = gate.decide(GATE, m(0.7), "1", None, None)
    assert d.passed and d.promote and d.scoring_version == "1"
    assert "no champion yet" in d.reasons[-1]


def test_better_candidate_is_promoted() -> None:
    d = gate.decide(GATE, m(0.75), "3", m(0.72), "2")
    assert d.promote and d.scoring_version == "3"
    assert "beats champion v2" in d.reasons[-1]


def test_weak_candidate_is_refused_and_champion_keeps_scoring() -> None:
    d = gate.decide(GATE, m(0.725), "3", m(0.72), "2")  # better, but not by the margin
    assert not d.passed and not d.promote and d.scoring_version == "2"
    assert "does not beat champion v2" in d.reasons[-2]
    assert "scoring with champion v2" in d.reasons[-1]


def test_skip_policy_scores_nothing() -> None:
    d = gate.decide({**GATE, "on_fail": "skip"}, m(0.70), "3", m(0.72), "2")
    assert d.scoring_version is None and "downstream steps are skipped" in d.reasons[-1]


def test_no_champion_and_failing_candidate_scores_nothing() -> None:
    d = gate.decide(GATE, m(0.55), "1", None, None)
    assert d.scoring_version is None
    assert "roc_auc 0.5500 misses the threshold (at least 0.6)" in " ".join(d.reasons)
    assert "there is no champion: nothing is scored" in d.reasons[-1]


def test_lower_is_better_thresholds() -> None:
    d = gate.decide(GATE, m(0.8, brier=0.3), "1", None, None)
    assert not d.passed and "brier 0.3000 misses the threshold (at most 0.2)" in " ".join(d.reasons)


def test_force_promote_waives_comparison_not_thresholds() -> None:
    assert gate.decide(GATE, m(0.70), "3", m(0.72), "2", force_promote=True).promote
    assert not gate.decide(GATE, m(0.50), "3", m(0.72), "2", force_promote=True).passed


def test_regression_metrics_and_lower_is_better_gate() -> None:
    """A regression gate compares RMSE downwards and floors R² (the task's defaults)."""
    rng = np.random.default_rng(3)
    y = rng.gamma(2.0, 10.0, 2000)
    good = gate.metrics("regression", y, y + rng.normal(0, 2.0, len(y)))
    mean_only = gate.metrics("regression", y, np.full(len(y), y.mean()))
    assert good["rmse"] < mean_only["rmse"] and good["r2"] > 0.9
    assert mean_only["r2"] == pytest.approx(0.0, abs=1e-9)
    policy = {"metric": None, "thresholds": None, "min_improvement": 0.5}
    better = gate.decide(policy, good, "2", mean_only, "1", task="regression")
    assert better.promote and "rmse" in better.reasons[-1]
    worse = gate.decide(policy, mean_only, "3", good, "2", task="regression")
    assert not worse.promote and worse.scoring_version == "2"
    assert "does not beat champion v2" in worse.reasons[-2]
    # the default floor: R² at least 0, i.e. no worse than predicting the mean
    shuffled = gate.metrics("regression", y, rng.permutation(y))
    refused = gate.decide(policy, shuffled, "4", None, None, task="regression")
    assert not refused.passed and refused.scoring_version is None
    assert (
        "r2" in refused.reasons[0] and "misses the threshold (at least 0.0)" in refused.reasons[0]
    )
