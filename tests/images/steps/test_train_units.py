"""Fast checks of the training building blocks (no TensorFlow session, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from model_steps.contract import StepError
from model_steps.gate import metrics, roc_auc
from model_steps.tracking import wait_for_server
from model_steps.training import holdout_mask, moments_to_stats


def test_roc_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.2
    p = np.round(rng.random(300) + 0.3 * y, 2)  # ties on purpose
    pos, neg = p[y], p[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(y, p) == pytest.approx(pairs)
    assert roc_auc(y, np.zeros(300)) == 0.5
    m = metrics("binary_classification", y, p.clip(0, 1))
    assert set(m) == {
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "lift_top_decile",
        "rows",
        "positives",
    }


def test_holdout_split_is_stable_and_sized():
    keys = np.array([f"D{i:08d}" for i in range(20000)])
    mask = holdout_mask(keys, 0.2, seed=42)
    assert 0.18 < mask.mean() < 0.22
    # order-independent and deterministic
    perm = np.random.default_rng(1).permutation(len(keys))
    assert (holdout_mask(keys[perm], 0.2, 42) == mask[perm]).all()
    assert not (holdout_mask(keys, 0.2, seed=7) == mask).all()


def test_moments_give_mean_and_variance():
    k = 17
    x = np.random.default_rng(2).normal(3.0, 2.0, size=(5000, k))
    m = np.concatenate([[len(x)], x.sum(0), (x * x).sum(0)])
    mean, var = moments_to_stats(m)
    assert np.allclose(mean, x.mean(0), atol=1e-4) and np.allclose(var, x.var(0), rtol=1e-3)


def test_wait_for_server_gives_up_within_its_budget():
    slept = []
    with pytest.raises(
        StepError, match=r"MLflow tracking server http://127.0.0.1:9 is not reachable"
    ):
        wait_for_server("http://127.0.0.1:9", budget_s=5, sleep=slept.append)
    assert slept and sum(slept) <= 5
    assert wait_for_server("file:///tmp/mlruns") == 0.0
