"""Off-policy evaluation: what another allocation policy would have earned on the contacts we sent.

Every treated contact is logged with its segment, the variant it got, the probability it had of
getting it (its propensity, :mod:`model_steps.bandit`) and its reward. From that log, for a target
policy ``pi`` (shares per segment):

* **IPS** (inverse propensity scoring): ``mean(w * r)`` with ``w = pi(a|x) / p``; unbiased when every
  propensity is positive, noisy when weights are large.
* **SNIPS** (self-normalised IPS): ``sum(w * r) / sum(w)``; a little biased, much less noisy.
* **DR** (doubly robust): a reward model ``q(x, a)`` (per segment and variant, Beta(1, 1)-smoothed
  means, cross-fitted on two halves so a row never predicts itself) plus the IPS correction of its
  error: ``mean(sum_a pi(a|x) q(x, a) + w * (r - q(x, a)))``; unbiased if either the propensities or
  the reward model are right, and usually the tightest.

Intervals are percentile bootstraps over contacts (the reward model is held fixed within them, a
standard simplification that slightly understates DR's width). The estimators are checked on the
campaign simulator against the true value it knows (tests/images/steps/test_bandit.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Log:
    """The treated arm of one campaign run: one row per contact."""

    segments: np.ndarray  # segment name per contact
    actions: np.ndarray  # variant index per contact
    rewards: np.ndarray  # 0/1 (or any reward) per contact
    propensities: np.ndarray  # probability the logging policy gave the logged variant

    def __post_init__(self) -> None:
        n = self.segments.size
        sizes = {self.actions.size, self.rewards.size, self.propensities.size}
        if sizes != {n}:
            raise ValueError(f"log columns differ in length: {sorted(sizes | {n})}")
        if n and (self.propensities <= 0).any():
            raise ValueError("a logged propensity is 0: no estimator can reweight that contact")


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high


def target_matrix(log: Log, policy: Mapping[str, np.ndarray], variants: int) -> np.ndarray:
    """pi(a | x_i) for every contact i and variant a (rows sum to 1)."""
    out = np.empty((log.segments.size, variants))
    for segment in np.unique(log.segments):
        rows = log.segments == segment
        out[rows] = policy[str(segment)]
    return out


def reward_model(log: Log, variants: int, seed: int = 0) -> np.ndarray:
    """Cross-fitted q(x_i, a): smoothed mean reward of (segment, a) on the other half of the log."""
    n = log.segments.size
    fold = np.random.default_rng(seed).permutation(n) % 2
    names, seg = np.unique(log.segments, return_inverse=True)
    cell = seg * variants + log.actions
    out = np.empty((n, variants))
    for f in (0, 1):
        train = fold != f
        won = np.bincount(cell[train], weights=log.rewards[train], minlength=names.size * variants)
        sent = np.bincount(cell[train], minlength=names.size * variants)
        mean = ((won + 1.0) / (sent + 2.0)).reshape(names.size, variants)
        out[fold == f] = mean[seg[fold == f]]
    return out


def _terms(log: Log, target: np.ndarray, model: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.arange(log.actions.size)
    weight = target[rows, log.actions] / log.propensities
    direct = (target * model).sum(axis=1)
    return {
        "w": weight,
        "wr": weight * log.rewards,
        "dr": direct + weight * (log.rewards - model[rows, log.actions]),
    }


def _point(terms: dict[str, np.ndarray], idx: np.ndarray | slice) -> dict[str, float]:
    wr, w = terms["wr"][idx], terms["w"][idx]
    return {
        "ips": float(wr.mean()),
        "snips": float(wr.sum() / w.sum()) if w.sum() > 0 else float("nan"),
        "dr": float(terms["dr"][idx].mean()),
    }


def evaluate(
    log: Log,
    policies: Mapping[str, Mapping[str, np.ndarray]],
    variants: int,
    *,
    bootstrap: int = 300,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Estimate]]:
    """IPS, SNIPS and DR estimates, with bootstrap intervals, of each policy's mean reward."""
    if log.segments.size == 0:
        return {}
    model = reward_model(log, variants, seed)
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, log.segments.size, log.segments.size) for _ in range(bootstrap)]
    tail = (1 - confidence) / 2 * 100
    out: dict[str, dict[str, Estimate]] = {}
    for name, policy in policies.items():
        terms = _terms(log, target_matrix(log, policy, variants), model)
        point = _point(terms, slice(None))
        draws = [_point(terms, idx) for idx in resamples]
        out[name] = {
            est: Estimate(
                point[est],
                float(np.nanpercentile([d[est] for d in draws], tail)),
                float(np.nanpercentile([d[est] for d in draws], 100 - tail)),
            )
            for est in ESTIMATORS
        }
    return out


def true_value(
    policy: Mapping[str, np.ndarray], rates: Mapping[str, np.ndarray], weights: Mapping[str, float]
) -> float:
    """A policy's exact mean reward when the response rates are known (the simulator's oracle)."""
    total = sum(weights.values())
    return float(sum(weights[s] / total * policy[s] @ rates[s] for s in weights))


def segment_weights(segments: Sequence[str]) -> dict[str, float]:
    names, counts = np.unique(np.asarray(segments, dtype=str), return_counts=True)
    return {str(n): float(c) for n, c in zip(names, counts, strict=True)}
