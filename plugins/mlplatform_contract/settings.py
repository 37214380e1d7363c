"""Customer settings: the one schema of what every step of a customer's run receives.

Layers, each a partial dict: platform defaults (below) ← the model module's ``defaults`` ← its
``tiers[<tier>]`` ← the customer's own ``settings``. The control plane validates the merged result at
parse time and sends it to every step as ``STEP_CONFIG`` JSON; the step parses that JSON with this
same schema (:func:`step_settings`), so both sides agree on every key, bound and default.

The ``model`` section belongs to the model: the platform passes it through, and the model package
validates it with its own schema when a step starts (the scheduler cannot import model code).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlplatform_contract.campaigns import Campaign


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
    driver_jit: Literal["quick", "full"] = Field(
        "quick",
        description="local[N] only: the driver JVM's JIT. quick (C1 only, serial GC) finishes a "
        "run of a few minutes 2-3x sooner, as no C2 compile competes for the cores; full (the "
        "JVM's tiered default) for local runs long enough to repay C2. Executors keep full.",
    )
    driver_class_archive: bool = Field(
        True,
        description="local[N] with driver_jit quick: map the class archive make setup writes "
        "(JVM class-data sharing; about half the session start) when the workload venv has one",
    )


class DataSettings(_Strict):
    spark: SparkSettings = SparkSettings()
    lookback_days: int = Field(365, gt=0, le=3650, description="feature history before a cutoff")
    label_window_days: int = Field(
        14, gt=0, le=365, description="the label's window after the training cutoff"
    )
    landing_delay_days: int = Field(
        1,
        ge=0,
        le=30,
        description="days between a day's end and its raw drops being complete: a scheduled run's "
        "data date is its due day minus this",
    )
    require_label_window: bool = Field(
        True, description="event tables must have drops up to the data date (the label window)"
    )
    output_rows_per_file: int = Field(
        1_000_000, gt=0, description="rows per parquet file of the feature tables"
    )


class ValidationSettings(_Strict):
    min_rows: int = Field(100, ge=1)
    max_rows: int = Field(50_000_000, ge=1)
    label_rate_min: float = Field(0.005, ge=0, le=1, description="suite parameter (classification)")
    label_rate_max: float = Field(0.6, ge=0, le=1, description="suite parameter (classification)")
    drift_psi_warn: float = Field(0.1, gt=0)
    drift_psi_fail: float = Field(0.25, gt=0)
    reference_profile_uri: str | None = Field(
        None, description="explicit drift reference (else the champion's, else the first run's)"
    )
    max_null_fraction: float = Field(0.0, ge=0, le=1, description="share of nulls per feature")

    @model_validator(mode="after")
    def _ordered(self) -> ValidationSettings:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        if self.label_rate_min > self.label_rate_max:
            raise ValueError("label_rate_min must not exceed label_rate_max")
        if self.drift_psi_warn > self.drift_psi_fail:
            raise ValueError("drift_psi_warn must not exceed drift_psi_fail")
        return self


class VolumeGuardSettings(_Strict):
    """Each raw drop's row count against the trailing median of the table's earlier drops."""

    history_drops: int = Field(28, ge=1, le=3650, description="drops the median is taken over")
    min_history_drops: int = Field(7, ge=1, description="fewer earlier drops: not judged")
    min_median_rows: int = Field(30, ge=1, description="a smaller median is too noisy to judge")
    warn_below: float = Field(0.3, ge=0, lt=1)
    error_below: float = Field(0.05, ge=0, lt=1)
    warn_above: float = Field(3.0, gt=1)
    error_above: float = Field(10.0, gt=1)

    @model_validator(mode="after")
    def _ordered(self) -> VolumeGuardSettings:
        if self.min_history_drops > self.history_drops:
            raise ValueError("min_history_drops must not exceed history_drops")
        if self.error_below > self.warn_below:
            raise ValueError("error_below must not exceed warn_below")
        if self.warn_above > self.error_above:
            raise ValueError("warn_above must not exceed error_above")
        return self


class RawGuardSettings(_Strict):
    """Ingest's guards over every declared raw table (docs/data-steps.md "Raw-zone guards")."""

    enabled: bool = Field(
        True, strict=True, description="false skips bounds, domains, keys, foreign keys and volume"
    )
    max_orphan_share: float = Field(
        0.01, ge=0, le=1, description="foreign-key orphans warn up to this share, then fail"
    )
    max_examples: int = Field(3, ge=1, le=100, description="example rows/values per finding")
    volume: VolumeGuardSettings = VolumeGuardSettings()


class TrainingSettings(_Strict):
    """The platform's training loop; the network's own knobs are in the ``model`` section."""

    epochs: int = Field(8, gt=0, le=1000)
    batch_size: int = Field(1024, gt=0)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    warmup_epochs: int = Field(1, ge=0)
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    checkpoint_seconds: float = Field(
        30,
        ge=0,
        description="a single-process fit commits at most one checkpoint per this many seconds "
        "(0: every one it saves; the Keras loop checkpoints every epoch)",
    )


class HalvingSettings(_Strict):
    """Successive halving: every trial trains ``rung_fraction`` of its epochs, the better half
    (by the objective on the validation split) continues from its checkpoint to all epochs."""

    enabled: bool = Field(False, strict=True)
    rung_fraction: float = Field(
        0.34, gt=0, lt=1, description="share of training.epochs before the cut (at least 1 epoch)"
    )


class TuningSettings(_Strict):
    """Hyperparameter search over the model's ``search_space`` (docs/training.md "Tuning"): the
    budget of one run. Off by default: the DAG is then exactly the untuned one."""

    enabled: bool = Field(False, strict=True, description="adds tune -> trials -> select")
    trials: int = Field(8, ge=1, le=256, description="configurations sampled per run")
    parallel_trials: int = Field(
        2,
        ge=1,
        le=64,
        description="trials at once per run (max_active_tis_per_dagrun; capped at trials)",
    )
    seed: int = Field(0, description="with pipeline and customer: the same trials on every retry")
    objective: str | None = Field(
        None, description="a metric of the task, on the validation split (default: the task's)"
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of the training split the trials are scored on"
    )
    min_successful_trials: int = Field(
        1, ge=1, description="fewer finished trials fail the select step"
    )
    halving: HalvingSettings = HalvingSettings()

    def rung_epochs(self, epochs: int) -> list[int]:
        """The epoch each rung of the trials ends at: all epochs, or with halving the cut first.
        Both sides read it: the factory builds one mapped trial task per rung."""
        cut = max(1, math.ceil(self.halving.rung_fraction * epochs))
        return [cut, epochs] if self.halving.enabled and cut < epochs else [epochs]

    @model_validator(mode="after")
    def _within_budget(self) -> TuningSettings:
        if self.min_successful_trials > self.trials:
            raise ValueError("min_successful_trials must not exceed trials")
        return self


class GateSettings(_Strict):
    """The evaluation gate's policy. ``metric`` and ``thresholds`` default per task type
    (mlplatform_contract.tasks); the spec checks them against the module's task."""

    metric: str | None = Field(None, description="comparison metric (default: the task's)")
    min_improvement: float = Field(0.0, ge=0, description="margin over the champion on `metric`")
    thresholds: dict[str, float] | None = Field(
        None, description="absolute bounds the candidate must meet (default: the task's)"
    )
    on_fail: Literal["skip", "score_with_champion"] = "score_with_champion"


class ScoringSettings(_Strict):
    chunk_rows: int = Field(200_000, gt=0)


class ArbitrationSettings(_Strict):
    """Several campaigns of one customer on one day (model_steps.contact_claims): who may send."""

    rule: Literal["priority", "expected_value"] = Field(
        "priority",
        description="between claims of the day still undecided: the campaign's priority first "
        "(ties by the contact's score), or the score first (ties by priority); a contact won by an "
        "earlier decided claim is never taken back",
    )
    cap_per_day: int = Field(
        1, ge=1, le=20, description="messages per contact per customer per data date, all pipelines"
    )


class CrmSettings(_Strict):
    """How records travel to the CRM; which rows and what a record holds are the model's."""

    connection_id: str = Field(
        "crm_default",
        pattern=r"^[a-z][a-z0-9_-]{0,58}[a-z0-9]$",
        description="the Airflow connection (local runtime) and, with _ as -, the Secret "
        "(cluster) holding this customer's CRM endpoint and token",
    )
    batch_size: int = Field(500, gt=0, le=10_000)
    max_concurrency: int = Field(4, gt=0, le=64)
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
    control_fraction: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="share of the selected contacts (the model's crm_select) held out as the "
        "campaign's control group: never sent, so sent = selected - held out (the model's top "
        "10% with 0.1 held out sends about 9%); a hash of contact and run, so a retry holds out "
        "the same ones",
    )
    campaign: Campaign | None = Field(
        None,
        description="offer variants of the treated arm and the policy that allocates them per "
        "segment (docs/campaigns.md); none = every treated contact gets the model's record as is",
    )
    arbitration: ArbitrationSettings = ArbitrationSettings()


class MonitoringSettings(_Strict):
    """Outcome monitoring (the ``monitor`` step) and the retraining it may ask for."""

    enabled: bool = Field(True, description="build the customer's monitoring DAG")
    schedule: str | None = Field(
        "0 7 * * *", description="the monitoring DAG's cron (it also runs when raw data lands)"
    )
    min_arm_size: int = Field(
        50, ge=2, description="fewer contacts than this in an arm: the uplift is inconclusive"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the uplift's interval")
    retrain_on_degradation: bool = Field(
        True,
        description="ask for retraining when the realized metric misses the gate's threshold "
        "or the score drift exceeds validation.drift_psi_fail",
    )
    retrain_cooldown_hours: float = Field(
        72, ge=0, le=24 * 90, description="no retrain request within this long of the champion"
    )
    auto_rollback: bool = Field(
        False,
        description="roll the champion back to the previous one when its uplift verdict is harm "
        "or its realized metrics miss the gate's thresholds while the previous champion held "
        "(docs/model-lifecycle.md)",
    )


class ContinuousTrainingSettings(_Strict):
    """What (besides the schedule) starts a training run: Airflow asset events."""

    on_new_data: bool = Field(True, description="the customer's raw data landed (asset event)")
    on_new_image: bool = Field(True, description="CI published a new image manifest")
    on_degradation: bool = Field(True, description="monitoring asked for retraining")


class CustomerSettings(_Strict):
    schedule: str | None = Field(None, description="overrides the pipeline's schedule")
    resources: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="partial resource profile overrides per step"
    )
    data: DataSettings = DataSettings()
    validation: ValidationSettings = ValidationSettings()
    raw_guards: RawGuardSettings = RawGuardSettings()
    training: TrainingSettings = TrainingSettings()
    tuning: TuningSettings = TuningSettings()
    gate: GateSettings = GateSettings()
    scoring: ScoringSettings = ScoringSettings()
    crm: CrmSettings = CrmSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    continuous_training: ContinuousTrainingSettings = ContinuousTrainingSettings()
    model: dict[str, Any] = Field(
        default_factory=dict, description="the model's own settings, validated by the model"
    )

    def step_config(self) -> dict[str, Any]:
        """What steps receive: everything but the control plane's own scheduling knobs."""
        return self.model_dump(mode="json", exclude={"schedule", "resources"})


def step_settings(config: dict[str, Any]) -> CustomerSettings:
    """The workload's side: ``STEP_CONFIG`` parsed with the schema the control plane validated."""
    return CustomerSettings.model_validate(config)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``: nested dicts merge key by key, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
