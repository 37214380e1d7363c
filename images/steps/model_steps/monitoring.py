"""The monitor step's pure parts: realized metrics, calibration, the campaign's uplift, score drift.

Free of Spark, MLflow and I/O so each figure is tested on arrays with a known answer. The realized
metrics are the gate's own (:func:`model_steps.gate.metrics`), so "realized AUC" means exactly what
the holdout AUC meant when the model was promoted.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from model_steps import gate
from model_steps.profile import psi

CALIBRATION_BINS = 10


def realized(
    task: str, y: np.ndarray, p: np.ndarray, classes: tuple[str, ...] = ()
) -> dict[str, float]:
    """The task's metrics on what actually happened, plus calibration and top-decile lift (for
    several classes: :func:`realized_classes`)."""
    if classes:
        return realized_classes(y, p, classes)
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    out = dict(gate.metrics(task, y, p))
    out["lift_top_decile"] = round(gate.lift_top_decile(y, p), 6)
    out.update(calibration(task, y, p))
    return out


def realized_classes(y: np.ndarray, p: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Several classes (``y`` the class index, ``p`` the (n, k) probabilities): the gate's metrics,
    each class's recall (``recall_<class>``; a class nobody had is left out) and the top-label
    calibration error (the likeliest class's probability against whether it was the outcome)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).reshape(len(y), len(classes))
    out = dict(gate.metrics("multiclass_classification", y, p))
    if len(y) == 0:
        return out
    hit = hits(y, p)
    for i, name in enumerate(classes):
        if (actual := y == i).any():
            out[f"recall_{name}"] = round(float(hit[actual].mean()), 6)
    top = calibration("binary_classification", hit, p.max(axis=1))
    out["calibration_error"] = top["calibration_error"]
    return out


def hits(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """1.0 where the outcome ``y`` (a class index) is the likeliest class of ``p``'s row, else 0:
    for several classes, the outcome the uplift compares (the contact did what was predicted)."""
    return (np.asarray(p).argmax(axis=1) == np.asarray(y).ravel()).astype(np.float64)


def calibration(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """How far the scores are from the outcome's level: for a classifier the expected calibration
    error over score deciles; for a regression the slope of outcome on prediction (1 is ideal)."""
    if len(y) == 0:
        return {}
    out = {"mean_predicted": round(float(p.mean()), 6), "mean_outcome": round(float(y.mean()), 6)}
    if task == "regression":
        var = float(((p - p.mean()) ** 2).sum())
        slope = float(((p - p.mean()) * (y - y.mean())).sum() / var) if var else float("nan")
        out["calibration_slope"] = round(slope, 6)
        return out
    order = np.argsort(p, kind="mergesort")
    ece = 0.0
    for part in np.array_split(order, min(CALIBRATION_BINS, len(p))):
        ece += len(part) / len(p) * abs(float(p[part].mean()) - float(y[part].mean()))
    out["calibration_error"] = round(ece, 6)
    return out


def uplift(
    treated: np.ndarray,
    control: np.ndarray,
    *,
    min_arm: int,
    confidence: float,
    positive_outcome: str = "good",
) -> dict[str, Any]:
    """Outcome treated vs control (a rate for a classifier, a mean for a regression) with a
    normal-approximation interval of the difference (Welch's standard error).

    The verdict follows the model's ``positive_outcome``: when a higher outcome is good (a
    conversion) ``win`` means the whole interval lies above zero and ``harm`` below; when it is
    bad (churn) the other way round. ``no_effect_detected`` when it spans zero, ``inconclusive``
    (no numbers) when an arm has fewer than ``min_arm`` contacts: too small a group to say anything.
    """
    t = np.asarray(treated, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    out: dict[str, Any] = {
        "n_treated": int(t.size),
        "n_control": int(c.size),
        "positive_outcome": positive_outcome,
    }
    if min(t.size, c.size) < max(min_arm, 2):
        out.update(
            verdict="inconclusive",
            reason=f"an arm has fewer than {min_arm} contacts (treated {t.size}, control "
            f"{c.size}): too small to measure an uplift",
        )
        return out
    diff = float(t.mean() - c.mean())
    se = math.sqrt(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    low, high = diff - z * se, diff + z * se
    up, down = ("win", "harm") if positive_outcome == "good" else ("harm", "win")
    verdict = up if low > 0 else down if high < 0 else "no_effect_detected"
    out.update(
        treated=round(float(t.mean()), 6),
        control=round(float(c.mean()), 6),
        difference=round(diff, 6),
        ci_low=round(low, 6),
        ci_high=round(high, 6),
        confidence=confidence,
        verdict=verdict,
    )
    return out


def class_drift(reference: np.ndarray, current: np.ndarray, classes: tuple[str, ...]) -> float:
    """PSI of the current run's predicted-class shares against a reference run's."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")

    def shares(x: np.ndarray) -> list[float]:
        values = np.asarray(x, dtype=object)
        return [float((values == c).mean()) for c in classes]

    return round(psi(shares(reference), shares(current)), 6)


def score_drift(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of the current run's scores against a reference run's, over the reference's deciles."""
    reference = np.asarray(reference, dtype=np.float64).ravel()
    current = np.asarray(current, dtype=np.float64).ravel()
    if reference.size == 0 or current.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))

    def shares(x: np.ndarray) -> list[float]:
        counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)
        return list(counts / x.size)

    return round(psi(shares(reference), shares(current)), 6)
