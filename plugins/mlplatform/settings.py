"""Customer settings: the layered configuration every step of a customer's run receives.

Layers, each a partial dict: platform defaults (these models' defaults) ← the model module's
``defaults`` ← its ``tiers[<tier>]`` ← the customer's own ``settings``. The merged result is validated
here once, at parse time, and sent to every step as ``STEP_CONFIG`` JSON.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlplatform.steps import StepKind

GateMetric = Literal["roc_auc", "pr_auc", "log_loss", "brier", "lift_top_decile"]
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "brier"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


JVM_MEMORY = r"^[1-9][0-9]*[mg]$"


class SparkSettings(_Strict):
    """How ingest runs Spark. ``executors: 0`` (default) is ``local[N]`` inside the step's own pod;
    more, in the kubernetes runtime, makes the step's pod the driver of up to that many executor
    pods (Spark client mode: docs/data-steps.md, "Spark on Kubernetes"). The local runtime always
    runs ``local[N]``."""

    executors: int = Field(
        0, ge=0, le=200, description="max executor pods; 0 = local[N] in the pod"
    )
    executor_cores: int = Field(2, ge=1, le=16)
    executor_memory: str = Field("6g", pattern=JVM_MEMORY, description="JVM heap per executor")
    driver_memory: str = Field("2g", pattern=JVM_MEMORY, description="JVM heap of the driver")
    shuffle_partitions: int | None = Field(None, ge=1, le=20_000)


class DataSettings(_Strict):
    spark: SparkSettings = SparkSettings()
    lookback_days: int = Field(365, gt=0, le=3650)
    label_window_days: int = Field(14, gt=0, le=365)
    landing_delay_days: int = Field(
        1,
        ge=0,
        le=30,
        description="days between a day's end and its raw drops being complete: a scheduled run's "
        "data date is its due day minus this",
    )


class ValidationSettings(_Strict):
    min_rows: int = Field(100, ge=1)
    max_rows: int = Field(50_000_000, ge=1)
    label_rate_min: float = Field(0.005, ge=0, le=1)
    label_rate_max: float = Field(0.6, ge=0, le=1)
    drift_psi_warn: float = Field(0.1, gt=0)
    drift_psi_fail: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ValidationSettings:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        if self.label_rate_min > self.label_rate_max:
            raise ValueError("label_rate_min must not exceed label_rate_max")
        if self.drift_psi_warn > self.drift_psi_fail:
            raise ValueError("drift_psi_warn must not exceed drift_psi_fail")
        return self


class TrainingSettings(_Strict):
    epochs: int = Field(8, gt=0, le=1000)
    batch_size: int = Field(1024, gt=0)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    warmup_epochs: int = Field(1, ge=0)
    hidden_units: tuple[int, ...] = Field((128, 64), min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42


class GateSettings(_Strict):
    """The evaluation gate's policy: absolute thresholds, and how much to beat the champion by."""

    metric: GateMetric = "roc_auc"
    min_improvement: float = Field(0.0, ge=0, description="margin over the champion on `metric`")
    thresholds: dict[GateMetric, float] = Field(
        default_factory=lambda: {"roc_auc": 0.6},
        description="minimums (maximums for log_loss and brier) the candidate must meet",
    )
    on_fail: Literal["skip", "score_with_champion"] = "score_with_champion"


class ScoringSettings(_Strict):
    chunk_rows: int = Field(200_000, gt=0)


class CrmSettings(_Strict):
    connection_id: str = Field(
        "crm_default",
        pattern=r"^[a-z][a-z0-9_-]{0,58}[a-z0-9]$",
        description="the Airflow connection (local runtime) and, with _ as -, the Secret "
        "(cluster) holding this customer's CRM endpoint and token",
    )
    batch_size: int = Field(500, gt=0, le=10_000)
    max_concurrency: int = Field(4, gt=0, le=64)
    top_fraction: float = Field(0.2, gt=0, le=1, description="share of diners, by score, to push")
    offer_code: str = Field("spring-offer", min_length=1, max_length=64)
    max_retries: int = Field(
        8, ge=0, le=100, description="per batch, on 429 / 5xx / network errors"
    )
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="per HTTP request")
    backoff_max_seconds: float = Field(
        60.0, gt=0, le=3600, description="cap of one wait (backoff or the CRM's Retry-After)"
    )
    checkpoint_interval_seconds: float = Field(
        1.0, ge=0, le=3600, description="how often acknowledged batches are saved (0 = each one)"
    )


class CustomerSettings(_Strict):
    schedule: str | None = Field(None, description="overrides the pipeline's schedule")
    resources: dict[StepKind, dict[str, Any]] = Field(
        default_factory=dict, description="partial resource profile overrides per step"
    )
    data: DataSettings = DataSettings()
    validation: ValidationSettings = ValidationSettings()
    training: TrainingSettings = TrainingSettings()
    gate: GateSettings = GateSettings()
    scoring: ScoringSettings = ScoringSettings()
    crm: CrmSettings = CrmSettings()

    def step_config(self) -> dict[str, Any]:
        """What steps receive: everything but the control plane's own scheduling knobs."""
        return self.model_dump(mode="json", exclude={"schedule", "resources"})


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``: nested dicts merge key by key, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
