"""The data steps' view of STEP_CONFIG: the control plane's keys, with their defaults."""

from __future__ import annotations

from typing import Any

from model_steps.contract import UsageError

DATA_DEFAULTS: dict[str, Any] = {
    "lookback_days": 365,
    "label_window_days": 14,
    # added by the data steps:
    "require_label_window": True,  # training runs need the label window's events to have arrived
    "output_rows_per_file": 1_000_000,
}
VALIDATION_DEFAULTS: dict[str, Any] = {
    "min_rows": 100,
    "max_rows": 50_000_000,
    "label_rate_min": 0.005,
    "label_rate_max": 0.6,
    "drift_psi_warn": 0.1,
    "drift_psi_fail": 0.25,
    # added by the data steps:
    "suite": None,  # expectation suite file name (default: <pipeline>.json, else default.json)
    "reference_profile_uri": None,  # explicit drift reference (else champion's, else first-run baseline)
    "max_null_fraction": 0.0,  # allowed share of nulls in feature columns
}


def _merged(config: dict[str, Any], section: str, defaults: dict[str, Any]) -> dict[str, Any]:
    given = config.get(section) or {}
    if not isinstance(given, dict):
        raise UsageError(f"STEP_CONFIG[{section!r}] must be an object, got {type(given).__name__}")
    return {**defaults, **given}


def data_settings(config: dict[str, Any]) -> dict[str, Any]:
    s = _merged(config, "data", DATA_DEFAULTS)
    for k in ("lookback_days", "label_window_days"):
        if not isinstance(s[k], int) or s[k] <= 0:
            raise UsageError(f"STEP_CONFIG data.{k} must be a positive integer, got {s[k]!r}")
    return s


def validation_settings(config: dict[str, Any]) -> dict[str, Any]:
    s = _merged(config, "validation", VALIDATION_DEFAULTS)
    if not 0 <= s["label_rate_min"] <= s["label_rate_max"] <= 1:
        raise UsageError(
            "STEP_CONFIG validation.label_rate_min/max must satisfy 0 <= min <= max <= 1"
        )
    if not 0 < s["drift_psi_warn"] <= s["drift_psi_fail"]:
        raise UsageError("STEP_CONFIG validation.drift_psi_warn must be > 0 and <= drift_psi_fail")
    return s
