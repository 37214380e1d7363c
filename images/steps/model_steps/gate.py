"""The evaluation gate's pure parts: the task's metrics on a holdout, and the policy that decides.

Kept free of MLflow and I/O so the policy is tested exhaustively on small arrays; the evaluate step
(steps/evaluate.py) does the loading, reporting and promotion around it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlplatform_contract.tasks import TASKS, Task


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Exact ROC AUC (Mann-Whitney, ties counted half)."""
    y = np.asarray(y).ravel().astype(bool)
    p = np.asarray(p, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((_ranks(p)[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _ranks(p: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    _, first, counts = np.unique(p[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


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


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": round(roc_auc(y, p), 6),
        "pr_auc": round(pr_auc(y, p), 6),
        "log_loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 6),
        "brier": round(float(np.mean((p - y) ** 2)), 6),
        "lift_top_decile": round(lift_top_decile(y, p), 6),
        "rows": len(y),
        "positives": int(y.sum()),
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (a constant prediction ranks nothing)."""
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den else float("nan")


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    err = p - y
    total = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    spearman = _correlation(_ranks(y), _ranks(p))
    return {
        "rmse": round(float(np.sqrt(np.mean(err**2))), 6),
        "mae": round(float(np.mean(np.abs(err))), 6),
        "r2": round(1.0 - float((err**2).sum()) / total, 6) if total else float("nan"),
        "spearman": round(spearman, 6),
        "rows": len(y),
        "label_mean": round(float(y.mean()), 6) if len(y) else float("nan"),
    }


def multiclass_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """``y``: class indices 0..k-1; ``p``: an (n, k) matrix of class probabilities. Macro F1 over
    the classes that occur in ``y`` or in the predictions (a class neither has counts nothing)."""
    y = np.asarray(y).ravel().astype(np.int64)
    p = np.asarray(p, dtype=np.float64).reshape(len(y), -1)
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class indices 0..{p.shape[1] - 1}")
    picked = p.argmax(axis=1)
    f1 = []
    for c in np.union1d(y, picked):
        tp = float(np.sum((picked == c) & (y == c)))
        f1.append(2 * tp / (np.sum(picked == c) + np.sum(y == c)))
    true_p = np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)
    return {
        "log_loss": round(float(-np.mean(np.log(true_p))), 6) if len(y) else float("nan"),
        "macro_f1": round(float(np.mean(f1)), 6) if f1 else float("nan"),
        "accuracy": round(float(np.mean(picked == y)), 6) if len(y) else float("nan"),
        "rows": len(y),
        "classes": int(p.shape[1]),
    }


def metrics(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The task's holdout metrics (mlplatform_contract.tasks names them), plus row counts."""
    if task == "regression":
        return regression_metrics(y, p)
    if task == "multiclass_classification":
        return multiclass_metrics(y, p)
    return classification_metrics(y, p)


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
    task: str = "binary_classification",
    force_promote: bool = False,
) -> Decision:
    """Apply the module's gate policy in the task's directions. Absolute thresholds always apply;
    ``force_promote`` only waives the comparison with the champion. An unset metric or thresholds
    take the task's defaults (mlplatform_contract.tasks)."""
    info: Task = TASKS[task]
    better = info.better
    reasons: list[str] = []
    thresholds = gate.get("thresholds")
    thresholds = info.default_thresholds if thresholds is None else thresholds
    for metric, bound in sorted(thresholds.items()):
        value = candidate[metric]
        ok = better(metric, value, bound)
        word = "at most" if metric in info.lower_is_better else "at least"
        reasons.append(
            f"{metric} {value:.4f} {'meets' if ok else 'misses'} the threshold ({word} {bound})"
        )
        if not ok:
            return _refused(gate, reasons, candidate, champion, champion_version)
    metric = gate.get("metric") or info.default_metric
    margin = float(gate.get("min_improvement", 0.0))
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
