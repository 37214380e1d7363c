"""Step results: what each step says when it ends, one pydantic model per step.

A step builds its model and returns it; the step CLI writes ``model_dump(mode="json")`` to the XCom
file (and the log line the MPIJob launcher is read from), so XCom still carries plain JSON. Every
reader parses it back with the step's model (:func:`parse_result`): the Prometheus metrics
(``model_steps.metrics``), the owner's notifications (``mlplatform.notify``), the retrain request
(``mlplatform.factory``), the monitor's history (``model_steps.monitor_report``) and the run
summary (``scripts/example_report.py``). The models are the documentation of what a step says:
docs/step-results.md is generated from them (``tools/step_results_doc.py``; a test keeps it current).

A field that is a Prometheus family of its own names it in its metadata (:func:`figure`): a number
(``rows`` -> ``mlops_rows``) or a section whose numeric leaves become one family labelled by name
(``metrics`` -> ``mlops_holdout_metric``). Every other numeric leaf is ``mlops_step_value``.

Pure pydantic, like the rest of this package: the scheduler and every step image import it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

METRIC_KEY = "metric"  # json_schema_extra key: the Prometheus family of a field
SECTION_KEY = "metric_section"  # json_schema_extra key: a section's numeric leaves, by name
# The fields naming the model version a step worked with, in order of preference: evaluate scores
# with scoring_version, whatever the candidate was.
VERSION_FIELDS = ("model_version", "scoring_version", "candidate_version")


def figure(metric: str, default: Any = ..., description: str = "") -> Any:
    """A numeric field that is also the Prometheus family ``metric``."""
    return Field(default, description=description, json_schema_extra={METRIC_KEY: metric})


def section(metric: str, default: Any = ..., description: str = "") -> Any:
    """A mapping whose numeric leaves form the family ``metric``, labelled ``name=<dotted key>``."""
    return Field(default, description=description, json_schema_extra={SECTION_KEY: metric})


class StepResult(BaseModel):
    """What every step result is: strict (an unknown field is a bug in the step), JSON on XCom."""

    model_config = ConfigDict(extra="forbid")
    step: ClassVar[str] = ""

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def families(cls) -> tuple[dict[str, str], dict[str, str]]:
        """(field -> family of a number, field -> family of a section's leaves) of this model."""
        named, sections = {}, {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if METRIC_KEY in extra:
                named[name] = str(extra[METRIC_KEY])
            if SECTION_KEY in extra:
                sections[name] = str(extra[SECTION_KEY])
        return named, sections

    def version_label(self) -> str:
        """The model version the step worked with ('' for steps before train)."""
        values = (getattr(self, f, None) for f in VERSION_FIELDS)
        return next((str(v) for v in values if v is not None), "")


class RankResult(StepResult):
    """A Horovod rank other than 0: it never reports (rank 0 speaks for the step)."""

    rank: int


ROWS = "mlops_rows"


class IngestResult(StepResult):
    step: ClassVar[str] = "ingest"
    status: Literal["passed", "passed_with_warnings"]
    model: str
    features_uri: str = Field(description="the labelled training table (run folder)")
    manifest_uri: str
    population_uri: str = Field(description="the unlabelled table to score (run folder)")
    cutoff_date: str = Field(description="the training table's as-of date (ISO)")
    rows: int = figure(ROWS, description="rows of the training table")
    population_rows: int
    label_rate: float | None = Field(description="the label's mean in the training table")
    raw_rows: dict[str, int] = Field(description="rows read per raw table")
    warnings: list[str]
    seconds: float


class ValidateResult(StepResult):
    step: ClassVar[str] = "validate"
    status: Literal["passed", "passed_with_warnings"]
    features_uri: str
    population_uri: str
    rows: int = figure(ROWS, description="rows of the training table")
    population_rows: int
    label_rate: float | None
    suite: str = Field(description="the expectation suite file")
    expectations: dict[str, Any] = Field(description="evaluated / failed counts (training table)")
    drift: dict[str, Any] = section(
        "mlops_drift", description="max_psi, top.<feature> PSI, warn_at, fail_at, reference"
    )
    tables: dict[str, dict[str, Any]] = Field(description="the same summary per table")
    errors: list[str]
    warnings: list[str]
    validation_uri: str
    gx_validation_uri: str
    data_docs_uri: str
    profile_uri: str = Field(description="this run's feature profile (a later drift reference)")
    seconds: float


class TrainResult(StepResult):
    step: ClassVar[str] = "train"
    status: Literal["trained"]
    model: str
    task: str
    mlflow_run_id: str
    experiment: str
    registered_model: str = Field(description="where the evaluate gate registers the candidate")
    model_version: str | None = Field(None, description="None: the gate registers (evaluate)")
    model_uri: str | None = Field(None, description="models:/<registered model>/<version>")
    run_model_uri: str = Field(description="runs:/<run id>/model: the model directory")
    model_digest: str = Field("", description="sha256 of the model directory (model_store)")
    metrics: dict[str, float] = section("mlops_holdout_metric", description="holdout metrics")
    epochs: int
    start_epoch: int
    resumed: bool
    epochs_run: int
    ranks: int
    rows_train: int
    steps_per_epoch: int
    global_batch_size: int
    epoch_seconds: list[float]
    samples_per_second: list[float]
    read_seconds: float
    fit_seconds: float
    run_dir: str
    checkpoint_uri: str = Field(
        description="the checkpoints' commit record (_LATEST.json); "
        "empty: a single-process fit that saved none"
    )
    profile_uri: str
    features_uri: str
    tuning: dict[str, Any] | None = Field(None, description="the trial trained (tuning.enabled)")
    seconds: float | None = None


class TrialResult(StepResult):
    """One tuning trial at one rung (the ``trial`` step)."""

    step: ClassVar[str] = "trial"
    status: Literal["ok", "failed"]
    objective: float | None
    objective_metric: str
    metrics: dict[str, float] = section("mlops_holdout_metric", description="validation metrics")
    validation_rows: int
    reason: str | None = None
    name: str
    index: int
    params: dict[str, Any]
    rung: int
    epochs: int
    start_epoch: int
    mlflow_run_id: str
    seconds: float


class TrialMap(RootModel[dict[str, dict[str, Any]]]):
    """``tune`` and ``halve``: {trial name: {name, index, params, rung}}, which the mapped trial
    tasks expand over."""

    step: ClassVar[str] = "tune"

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def families(cls) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {}

    def version_label(self) -> str:
        return ""


class SelectResult(StepResult):
    step: ClassVar[str] = "select"
    trial: str
    params: dict[str, Any]
    objective: str
    value: float
    parent_run_id: str
    trial_run_id: str | None
    finished: int
    trials: dict[str, dict[str, Any]]


class EvaluateResult(StepResult):
    step: ClassVar[str] = "evaluate"
    passed: bool = figure("mlops_gate_passed", description="the gate passed the candidate")
    promote: bool
    scoring_version: str | None
    reasons: list[str]
    candidate: dict[str, float] = section("mlops_candidate_metric")
    champion: dict[str, float] | None = section("mlops_champion_metric")
    registered_model: str
    candidate_version: str
    candidate_digest: str = Field("", description="sha256 of the registered model directory")
    champion_version: str | None
    scoring_model_uri: str | None = Field(description="None: nothing may be scored (exit 99)")
    report_uri: str
    report_files: list[str]
    decision_uri: str
    profile_uri: str
    skipped: bool = Field(False, description="the gate skipped downstream (exit 99)")
    reason: str | None = None
    pinned: bool = Field(
        False, description="an operator pinned the run to this version (re-score or rollback)"
    )


class ScoreResult(StepResult):
    step: ClassVar[str] = "score"
    status: Literal["scored"]
    rows: int = figure(ROWS, description="rows scored")
    model_uri: str
    model_version: str
    pinned: bool = Field(
        False, description="scored with the run's model_version param, not @champion"
    )
    output_uri: str
    manifest_uri: str
    parts: int
    rows_per_second: float
    predict_seconds: float
    seconds: float


class PublishResult(StepResult):
    step: ClassVar[str] = "publish"
    records: int = Field(description="records to send (the treated arm)")
    selected: int = Field(description="rows the model chose (claimed for the day)")
    owned: int = Field(description="of those, the contacts this run won in the day's arbitration "
                       "(both arms: the control arm is drawn from them)")  # fmt: skip
    lost: int = figure("mlops_records_lost_to_arbitration", 0,
                       "selected contacts another campaign of the day won, or the cap denied")  # fmt: skip
    lost_to: dict[str, int] = Field(
        default={},
        description="who won the lost contacts: pipeline/campaign#slot, or cap",
    )
    claims_uri: str | None = Field(None, description="the day's contact claims and decisions")
    arms: dict[str, int]
    campaign_uri: str
    scored_rows: int
    batches: int
    sent_batches: int
    sent_records: int = figure("mlops_records_sent")
    failed_batches: int = Field(0, description="batches the CRM refused (a final non-2xx)")
    failed_records: int = figure("mlops_records_failed", 0, "records in the refused batches")
    skipped_batches: int
    skipped_records: int
    replayed_batches: int
    retries: int
    retries_by_reason: dict[str, int]
    scores_uri: str
    checkpoint_uri: str
    model: str
    seconds: float
    error: str | None = Field(None, description="why sending stopped (a failed step's result)")


class RollbackRequest(BaseModel):
    """The monitor step's answer to: roll the champion back to the previous one? (settings
    monitoring.auto_rollback; model_steps.rollback decides, the monitoring DAG triggers the
    training DAG pinned to ``to_version`` with make_champion, actor ``automatic``)."""

    model_config = ConfigDict(extra="forbid")
    requested: bool
    reasons: list[str]
    from_version: str | None = Field(None, description="the champion that failed")
    to_version: str | None = Field(None, description="the previous champion, which held")
    scored_run_key: str | None = Field(None, description="the monitored run that failed")
    reason: str | None = Field(None, description="recorded with the move (names verdict and run)")


class RetrainDecision(BaseModel):
    """The monitor step's answer to: should the champion be retrained?"""

    model_config = ConfigDict(extra="forbid")
    requested: bool
    degraded: bool = False
    reasons: list[str]
    champion_version: str | None = None
    score_drift_psi: float | None = None
    cooldown_until: str | None = None


class OpeEstimate(BaseModel):
    """One off-policy estimate of a policy's mean reward per contact, with its bootstrap interval
    (None: no weight to estimate from, a SNIPS over contacts the policy never picks)."""

    model_config = ConfigDict(extra="forbid")
    value: float | None
    low: float | None
    high: float | None


class ArmCount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    successes: int
    trials: int


class CampaignFigures(BaseModel):
    """What the monitor learned from one run's campaign variants (model_steps.campaign_loop)."""

    model_config = ConfigDict(extra="forbid")
    campaign: str
    reward: str = Field(description="click or conversion: what counted as a success")
    logged_with: str = Field(description="the policy version the run's variants were drawn with")
    state_version: str = Field(description="the posterior version these outcomes built")
    based_on: str | None = Field(description="the version they were folded onto")
    contacts: int = Field(description="treated contacts whose outcomes were folded in")
    mean_reward: float | None
    counts: dict[str, dict[str, ArmCount]] = Field(description="segment -> variant -> this run's")
    shares: dict[str, dict[str, float]] = Field(
        default={}, description="segment -> variant -> the share the run was drawn with"
    )
    regret: dict[str, float] = Field(
        default={},
        description="segment -> contacts x (best variant's posterior mean - the realized mean): "
        "rewards the allocation gave up against always sending the variant now known best",
    )
    ope: dict[str, dict[str, OpeEstimate]] = Field(
        description="policy (logged, uniform, greedy) -> estimator (ips, snips, dr) -> estimate"
    )


class MonitoredRun(BaseModel):
    """The figures of one monitored scored run (committed in the monitoring table's manifest)."""

    model_config = ConfigDict(extra="forbid")
    scored_run_key: str
    data_date: str
    model_version: str
    registered_model: str | None
    rows: int
    realized: dict[str, float | None]
    pushed: dict[str, Any]
    uplift: dict[str, Any]
    mlflow: dict[str, Any] = Field(default_factory=dict)
    # the campaign's variants (settings crm.campaign): rewards per segment and variant folded into
    # the policy state, and the off-policy estimates (model_steps.campaign_loop); None without one
    campaign: CampaignFigures | None = None


class MonitorResult(StepResult):
    step: ClassVar[str] = "monitor"
    status: Literal["monitored", "nothing_due"]
    monitored: list[str]
    pending: list[dict[str, Any]]
    realized: dict[str, float | None] = section("mlops_realized_metric")
    uplift: dict[str, Any] = section("mlops_uplift")
    latest_run: dict[str, Any] | None
    campaign: CampaignFigures | None = Field(
        None, description="the latest monitored run's campaign figures (none: no variants)"
    )
    retrain: RetrainDecision
    rollback: RollbackRequest | None = Field(
        None, description="the automatic rollback's request (settings monitoring.auto_rollback)"
    )
    degraded: bool = Field(description="the owner is notified (mlplatform.notify)")
    reasons: list[str]
    report_uri: str | None
    seconds: float


RESULTS: dict[str, type[StepResult] | type[TrialMap]] = {
    m.step: m
    for m in (
        IngestResult,
        ValidateResult,
        TrainResult,
        EvaluateResult,
        ScoreResult,
        PublishResult,
        MonitorResult,
        TrialMap,
        TrialResult,
        SelectResult,
    )
}
RESULTS["halve"] = TrialMap

AnyResult = StepResult | TrialMap


def parse_result(step: str, payload: Any) -> AnyResult | None:
    """The XCom ``payload`` of ``step`` as its model; None for no payload or a step without one
    (a model's own step returns a plain dict)."""
    if payload is None or step not in RESULTS:
        return None
    return RESULTS[step].model_validate(payload)


def _examples() -> dict[str, AnyResult]:
    """One result per step, shaped like a `make run` of the example models: the documentation's
    examples and the tests' inputs (copy one with ``model_copy(update=...)``)."""
    run = "run=manual__2026-06-29-1a2b3c4d"
    lake = f"file:///lake/%s/churn/customer=acme-foods/{run}"
    model = "churn-acme-foods"
    return {**_data_examples(lake), **_model_examples(lake, model)}


def _data_examples(lake: str) -> dict[str, AnyResult]:
    model = "churn-acme-foods"
    return {
        "ingest": IngestResult(
            status="passed", model="churn", features_uri=lake % "features",
            manifest_uri=f"{lake % 'features'}/_MANIFEST.json",
            population_uri=lake % "population", cutoff_date="2026-06-14", rows=19762,
            population_rows=20011, label_rate=0.081, raw_rows={"entities": 20011, "events": 912345},
            warnings=[], seconds=41.2,
        ),
        "validate": ValidateResult(
            status="passed", features_uri=lake % "features", population_uri=lake % "population",
            rows=19762, population_rows=20011, label_rate=0.081, suite="suite.json",
            expectations={"evaluated": 134, "failed_critical": 0, "failed_warning": 0},
            drift={"max_psi": 0.04, "top": {"feature_1": 0.04}, "reference": "champion",
                   "warn_at": 0.1, "fail_at": 0.25},
            tables={"features": {"rows": 19762}, "population": {"rows": 20011}},
            errors=[], warnings=[], validation_uri=lake % "validation",
            gx_validation_uri=f"{lake % 'validation'}/gx_validation.json",
            data_docs_uri=f"{lake % 'validation'}/data_docs/index.html",
            profile_uri=f"{lake % 'validation'}/feature_profile.json", seconds=18.5,
        ),
        "train": TrainResult(
            status="trained", model="churn", task="binary_classification",
            mlflow_run_id="6f1c", experiment="churn", registered_model=model,
            run_model_uri="runs:/6f1c/model", model_digest="9e1f" * 16,
            metrics={"roc_auc": 0.747, "pr_auc": 0.206}, epochs=4, start_epoch=0, resumed=False,
            epochs_run=4, ranks=2, rows_train=15810, steps_per_epoch=31, global_batch_size=512,
            epoch_seconds=[7.2, 0.5, 0.5, 0.5], samples_per_second=[2196.0, 31620.0, 31620.0,
            31620.0], read_seconds=0.4, fit_seconds=8.7, run_dir=lake % "models",
            checkpoint_uri=f"{lake % 'models'}/checkpoints/_LATEST.json", profile_uri=f"{lake % 'models'}/"
            "feature_profile.json", features_uri=lake % "features", seconds=31.0,
        ),
    }  # fmt: skip


def _model_examples(lake: str, model: str) -> dict[str, AnyResult]:
    return {
        "evaluate": EvaluateResult(
            passed=True, promote=True, scoring_version="3",
            reasons=["roc_auc 0.7470 meets the threshold (at least 0.6)",
                     "no champion yet: the candidate becomes the first"],
            candidate={"roc_auc": 0.747}, champion=None, registered_model=model,
            candidate_version="3", champion_version=None, scoring_model_uri=f"models:/{model}/3",
            report_uri=f"{lake % 'evaluation'}/report/index.html", report_files=["index.html"],
            decision_uri=f"{lake % 'evaluation'}/decision.json",
            profile_uri=f"{lake % 'models'}/feature_profile.json",
        ),
        "score": ScoreResult(
            status="scored", rows=20011, model_uri=f"models:/{model}/3", model_version="3",
            output_uri=lake % "scores", manifest_uri=f"{lake % 'scores'}/_MANIFEST.json",
            parts=1, rows_per_second=51000.0, predict_seconds=0.3, seconds=4.1,
        ),
        "publish": PublishResult(
            records=1801, selected=2101, owned=2001, lost=100,
            lost_to={"churn_model/winback#1": 100}, arms={"treated": 1801, "control": 200},
            campaign_uri=lake % "campaign", scored_rows=20011, batches=4, sent_batches=4,
            sent_records=1801, skipped_batches=0, skipped_records=0, replayed_batches=0,
            retries=2, retries_by_reason={"429": 2}, scores_uri=lake % "scores",
            checkpoint_uri=f"{lake % 'publish'}/progress.json", model="churn", seconds=2.4,
            claims_uri="s3://lake/lake/publish/_claims/customer=acme/day=2026-06-01",
        ),
        "monitor": MonitorResult(
            status="monitored", monitored=["manual__2026-06-01-9f8e7d6c"], pending=[],
            realized={"roc_auc": 0.71, "pr_auc": 0.19}, uplift={"verdict": "positive",
            "difference": 0.012, "ci_low": 0.004, "ci_high": 0.02, "confidence": 0.95,
            "n_treated": 1801, "n_control": 200},
            latest_run={"scored_run_key": "manual__2026-06-01-9f8e7d6c",
                        "data_date": "2026-06-01", "model_version": "3"},
            campaign=_campaign_example(),
            retrain=RetrainDecision(requested=False, reasons=["champion v3 is healthy"],
                                    champion_version="3"),
            degraded=False, reasons=["champion v3 is healthy"], report_uri=None, seconds=12.0,
        ),
    }  # fmt: skip


def _campaign_example() -> CampaignFigures:
    est = {
        "ips": OpeEstimate(value=0.061, low=0.052, high=0.07),
        "snips": OpeEstimate(value=0.06, low=0.052, high=0.068),
        "dr": OpeEstimate(value=0.06, low=0.053, high=0.067),
    }
    return CampaignFigures(
        campaign="spring",
        reward="conversion",
        logged_with="prior",
        state_version="manual__2026-06-01-9f8e7d6c",
        based_on="prior",
        contacts=1801,
        mean_reward=0.06,
        counts={
            "gold": {
                "pct10": ArmCount(successes=60, trials=900),
                "pct20": ArmCount(successes=48, trials=901),
            }
        },
        shares={"gold": {"pct10": 0.5, "pct20": 0.5}},
        regret={"gold": 6.2},
        ope={
            "logged": est,
            "uniform": est,
            "greedy": {
                "ips": OpeEstimate(value=0.066, low=0.054, high=0.078),
                "snips": OpeEstimate(value=0.066, low=0.055, high=0.077),
                "dr": OpeEstimate(value=0.066, low=0.056, high=0.076),
            },
        },
    )


EXAMPLES: dict[str, AnyResult] = _examples()
