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
# data.spark: the control plane's SparkSettings (plugins/mlplatform/settings.py), same keys and defaults.
SPARK_DEFAULTS: dict[str, Any] = {
    "executors": 0,  # 0: local[N] in the step's pod; >0 with the kubernetes runtime: executor pods
    "executor_cores": 2,
    "executor_memory": "6g",
    "driver_memory": "2g",
    "shuffle_partitions": None,
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


CRM_DEFAULTS: dict[str, Any] = {
    # the control plane's keys (plugins/mlplatform/settings.py CrmSettings; a test keeps them equal)
    "connection_id": "crm_default",
    "batch_size": 500,
    "max_concurrency": 4,
    "top_fraction": 0.2,
    "offer_code": "spring-offer",
    "max_retries": 8,  # per batch, for 429 / 5xx / connection errors
    "timeout_seconds": 30.0,  # per HTTP request
    "backoff_max_seconds": 60.0,  # cap of one wait (exponential backoff, or the server's Retry-After)
    "checkpoint_interval_seconds": 1.0,  # how often acknowledged batches are saved (0 = every batch)
}


def crm_settings(config: dict[str, Any]) -> dict[str, Any]:
    s = _merged(config, "crm", CRM_DEFAULTS)
    for k in ("batch_size", "max_concurrency"):
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] <= 0:
            raise UsageError(f"STEP_CONFIG crm.{k} must be a positive integer, got {s[k]!r}")
    if not isinstance(s["max_retries"], int) or s["max_retries"] < 0:
        raise UsageError(f"STEP_CONFIG crm.max_retries must be >= 0, got {s['max_retries']!r}")
    if not isinstance(s["top_fraction"], int | float) or not 0 < s["top_fraction"] <= 1:
        raise UsageError(
            f"STEP_CONFIG crm.top_fraction must be in (0, 1], got {s['top_fraction']!r}"
        )
    for k in ("timeout_seconds", "backoff_max_seconds"):
        if not isinstance(s[k], int | float) or s[k] <= 0:
            raise UsageError(f"STEP_CONFIG crm.{k} must be a positive number, got {s[k]!r}")
    if (
        not isinstance(s["checkpoint_interval_seconds"], int | float)
        or s["checkpoint_interval_seconds"] < 0
    ):
        raise UsageError("STEP_CONFIG crm.checkpoint_interval_seconds must be >= 0")
    if not isinstance(s["offer_code"], str) or not s["offer_code"]:
        raise UsageError("STEP_CONFIG crm.offer_code must be a non-empty string")
    return s
