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


RAW_GUARD_DEFAULTS: dict[str, Any] = {
    # the control plane's keys (plugins/mlplatform/settings.py RawGuardSettings; a test keeps them
    # equal). The guards ingest applies to every declared raw table (raw_schema.RawTable).
    "enabled": True,  # false skips bounds, domains, keys, foreign keys and volume (benchmarks)
    "max_orphan_share": 0.01,  # foreign-key orphans: a warning up to this share of rows, then error
    "max_examples": 3,  # example rows/values per finding
    "volume": {
        "history_drops": 28,  # the trailing median is taken over this many earlier drops
        "min_history_drops": 7,  # fewer earlier drops: the drop is not judged
        "min_median_rows": 30,  # a smaller median is too noisy to judge (a few orders a day)
        "warn_below": 0.3,  # ratios of a drop's rows to the trailing median
        "error_below": 0.05,
        "warn_above": 3.0,
        "error_above": 10.0,
    },
}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def raw_guard_settings(config: dict[str, Any]) -> dict[str, Any]:
    s = _merged(config, "raw_guards", RAW_GUARD_DEFAULTS)
    if not isinstance(s["volume"], dict):
        raise UsageError("STEP_CONFIG raw_guards.volume must be an object")
    vol = s["volume"] = {**RAW_GUARD_DEFAULTS["volume"], **s["volume"]}
    if not isinstance(s["enabled"], bool):
        raise UsageError(
            f"STEP_CONFIG raw_guards.enabled must be true or false, got {s['enabled']!r}"
        )
    if not _number(s["max_orphan_share"]) or not 0 <= s["max_orphan_share"] <= 1:
        raise UsageError("STEP_CONFIG raw_guards.max_orphan_share must be in [0, 1]")
    if not isinstance(s["max_examples"], int) or not 1 <= s["max_examples"] <= 100:
        raise UsageError("STEP_CONFIG raw_guards.max_examples must be an integer in [1, 100]")
    for k in ("history_drops", "min_history_drops", "min_median_rows"):
        if not isinstance(vol[k], int) or isinstance(vol[k], bool) or vol[k] < 1:
            raise UsageError(f"STEP_CONFIG raw_guards.volume.{k} must be a positive integer")
    if vol["min_history_drops"] > vol["history_drops"]:
        raise UsageError("STEP_CONFIG raw_guards.volume.min_history_drops must be <= history_drops")
    ratios = [vol[k] for k in ("error_below", "warn_below", "warn_above", "error_above")]
    if (
        not all(_number(r) for r in ratios)
        or not 0 <= ratios[0] <= ratios[1] < 1 < ratios[2] <= ratios[3]
    ):
        raise UsageError(
            "STEP_CONFIG raw_guards.volume ratios must satisfy "
            "0 <= error_below <= warn_below < 1 < warn_above <= error_above"
        )
    return s
