"""The evaluation gate's pure parts: metrics on a holdout, and the policy that decides.

Kept free of MLflow and I/O so the policy is tested exhaustively on small arrays; the evaluate step
(steps/evaluate.py) does the loading, reporting and promotion around it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from model_steps.training import holdout_metrics

LOWER_IS_BETTER = frozenset({"log_loss", "brier"})
METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "lift_top_decile")


def pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: the area under the precision-recall curve, step-wise."""
    y = np.asarray(y, dtype=bool).ravel()
    if not y.any():
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=np.float64).ravel(), kind="mergesort")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    """Conversion rate among the top 10% by score over the overall rate (what a campaign buys)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.mean() == 0:
        return float("nan")
    top = max(1, math.ceil(0.1 * len(y)))
    order = np.argsort(-np.asarray(p, dtype=np.float64).ravel(), kind="mergesort")[:top]
    return float(y[order].mean() / y.mean())


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    base = holdout_metrics(y, p)
    base["pr_auc"] = round(pr_auc(y, p), 6)
    base["lift_top_decile"] = round(lift_top_decile(y, p), 6)
    return base


def better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """Whether ``a`` beats ``b`` by at least ``margin`` on ``metric`` (direction-aware)."""
    return a <= b - margin if metric in LOWER_IS_BETTER else a >= b + margin


@dataclass
class Decision:
    passed: bool
    promote: bool
    scoring_version: str | None
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    gate: dict[str, Any],
    candidate: dict[str, float],
    candidate_version: str,
    champion: dict[str, float] | None,
    champion_version: str | None,
    *,
    force_promote: bool = False,
) -> Decision:
    """Apply the module's gate policy. Absolute thresholds always apply; ``force_promote`` only
    waives the comparison with the champion."""
    reasons: list[str] = []
    for metric, bound in sorted(gate.get("thresholds", {}).items()):
        value = candidate[metric]
        ok = better(metric, value, bound)
        word = "at most" if metric in LOWER_IS_BETTER else "at least"
        reasons.append(
            f"{metric} {value:.4f} {'meets' if ok else 'misses'} the threshold ({word} {bound})"
        )
        if not ok:
            return _refused(gate, reasons, candidate, champion, champion_version)
    metric, margin = gate.get("metric", "roc_auc"), float(gate.get("min_improvement", 0.0))
    if champion is None:
        reasons.append("no champion yet: the candidate becomes the first")
    elif force_promote:
        reasons.append(f"force_promote: comparison with champion v{champion_version} waived")
    elif better(metric, candidate[metric], champion[metric], margin):
        reasons.append(
            f"{metric} {candidate[metric]:.4f} beats champion v{champion_version} "
            f"({champion[metric]:.4f}) by at least {margin}"
        )
    else:
        reasons.append(
            f"{metric} {candidate[metric]:.4f} does not beat champion v{champion_version} "
            f"({champion[metric]:.4f}) by {margin}"
        )
        return _refused(gate, reasons, candidate, champion, champion_version)
    return Decision(True, True, candidate_version, reasons, candidate, champion)


def _refused(
    gate: dict[str, Any],
    reasons: list[str],
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
) -> Decision:
    on_fail = gate.get("on_fail", "score_with_champion")
    if on_fail == "score_with_champion" and champion_version is not None:
        reasons.append(f"policy score_with_champion: scoring with champion v{champion_version}")
        return Decision(False, False, champion_version, reasons, candidate, champion)
    if on_fail == "score_with_champion":
        reasons.append("policy score_with_champion, but there is no champion: nothing is scored")
    else:
        reasons.append("policy skip: downstream steps are skipped")
    return Decision(False, False, None, reasons, candidate, champion)
