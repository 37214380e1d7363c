"""The lake layout, named once: every zone and path a customer's runs read and write.

::

    <lake>/raw/customer=<c>/<table>/dt=<day>/...                    the customer's drops
    <lake>/<zone>/<pipeline>/customer=<c>/run=<run key>/...         one run's output in a zone
    <lake>/<zone>/<pipeline>/customer=<c>/...                       what outlives a run
    <scores>/<pipeline>/customer=<c>/run=<run key>/                 SCORES_URI, else <lake>/scores

Zones of a run: ``features`` and ``population`` (ingest), ``validation``, ``models`` (train, its
tuning trials), ``tuning``, ``evaluation``, ``scores``, ``campaign`` and ``publish`` (publish),
``monitoring`` (the monitor, per scored run). Outside runs: ``models/…/champion/`` and
``reference/`` (the drift references), ``monitoring/…/report/`` and ``monitoring/…/policy/`` (the
campaign variants' posterior states), and ``publish/_claims/customer=<c>/day=<d>/`` (the day's
contact claims of all the customer's pipelines: arbitration and the frequency cap).

Each zone's place in the cluster's buckets and the step kinds that may write it are named here too
(``ZONES``): ``tools/lake_zones_json.py`` writes them to ``lake_zones.json``, which Terraform reads
(``terraform/modules/step_policy`` turns it into each step kind's IAM policy), and a test checks the
committed file is what this module says, so a zone's name, its prefix and its writer cannot drift
apart. A zone is written by exactly the kinds listed; nothing a later step trusts (the gate's
``decision.json`` and the champion's profile in ``evaluation``, the drift references in
``reference``) can be written by an earlier step.

Both sides may use it. Pure standard library, like the rest of the step contract.
"""

from __future__ import annotations

from dataclasses import dataclass

RAW = "raw"
FEATURES = "features"  # the labelled training table (ingest)
POPULATION = "population"  # the unlabelled table that gets scored (ingest)
VALIDATION = "validation"
MODELS = "models"
TUNING = "tuning"
EVALUATION = "evaluation"
SCORES = "scores"
CAMPAIGN = "campaign"
PUBLISH = "publish"
MONITORING = "monitoring"
REFERENCE = "reference"
REPORTS = "reports"  # what a model's own steps (extra_steps) write, e.g. a report
RUN_ZONES = (FEATURES, POPULATION, VALIDATION, MODELS, TUNING, EVALUATION, SCORES, CAMPAIGN,
             PUBLISH, MONITORING)  # fmt: skip
MANIFEST = "_MANIFEST.json"
CLAIMS = "_claims"  # publish's folder shared by a customer's pipelines: who may contact whom today

# The key prefix of each platform URI inside its bucket (helm/platform values stepEnv:
# LAKE_URI = s3://<lake bucket>/lake, SCORES_URI = s3://<scores bucket>/scores).
ROOTS = {"lake": "lake", "scores": "scores"}


@dataclass(frozen=True)
class Zone:
    """A zone as IAM sees it: where it lives in the platform's buckets and who may write it."""

    name: str
    bucket: str  # the platform bucket's key in Terraform's local.buckets: "lake" or "scores"
    writers: tuple[str, ...]  # step kinds whose role may write it
    written_by: str  # what writes it, for the reader of the policy

    @property
    def prefix(self) -> str:
        """Key prefix inside the bucket, ending in "/": the zone's folder under its URI's root."""
        if self.name == SCORES:  # SCORES_URI is the zone itself
            return f"{ROOTS['scores']}/"
        return f"{ROOTS[self.bucket]}/{self.name}/"


def _zones(*zones: Zone) -> dict[str, Zone]:
    return {z.name: z for z in zones}


ZONES = _zones(
    Zone(RAW, "lake", (), "the customer's drops (never a step)"),
    Zone(FEATURES, "lake", ("ingest",), "ingest: the labelled training table"),
    Zone(POPULATION, "lake", ("ingest",), "ingest: the table that gets scored"),
    Zone(
        MONITORING, "lake", ("ingest",), "monitor (runs as ingest): realized metrics and the report"
    ),
    Zone(VALIDATION, "lake", ("validate",), "validate: GX results, data docs, profiles"),
    Zone(
        REFERENCE,
        "lake",
        ("validate",),
        "validate: the drift references (first-run baseline, last population)",
    ),
    Zone(
        MODELS,
        "lake",
        ("train",),
        "train: checkpoints, the MLflow run marker, train_result.json, trials",
    ),
    Zone(
        TUNING,
        "lake",
        ("train",),
        "tune, halve, select (run as train): the trial plan and selections",
    ),
    Zone(
        EVALUATION,
        "lake",
        ("evaluate",),
        "evaluate: decision.json, the report, the champion's feature profile",
    ),
    Zone(SCORES, "scores", ("score",), "score: the committed scores (SCORES_URI)"),
    Zone(REPORTS, "lake", ("score",), "a model's own steps (runs_in score by default): reports"),
    Zone(PUBLISH, "lake", ("publish",), "publish: its progress checkpoint"),
    Zone(CAMPAIGN, "lake", ("publish",), "publish: the campaign's arms (treated / control)"),
)

# The buckets each step kind reads (whole bucket: it lists and reads its inputs there).
READERS: dict[str, tuple[str, ...]] = {
    "ingest": ("lake", "scores"),
    "validate": ("lake",),
    "train": ("lake",),
    "evaluate": ("lake",),
    "score": ("lake",),
    "publish": ("lake", "scores"),
}


def known_zone(name: str) -> str:
    """A zone's name, checked against ``ZONES`` (an unknown zone has no IAM grant)."""
    if name not in ZONES:
        raise KeyError(
            f"lake zone {name!r} is not in mlplatform_contract.layout.ZONES: {sorted(ZONES)}"
        )
    return name


def join(*parts: str) -> str:
    """Join URI parts with one ``/`` between them (a leading ``file:///`` or ``s3://`` is kept)."""
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))


@dataclass(frozen=True)
class CustomerLayout:
    """Where one pipeline's data for one customer lives."""

    lake_uri: str
    pipeline: str
    customer: str
    scores_uri: str | None = None  # SCORES_URI (the cluster's scores bucket); None: <lake>/scores

    def zone(self, zone: str) -> str:
        """The folder of every run of this pipeline and customer in ``zone``."""
        if zone == SCORES:
            root = self.scores_uri or join(self.lake_uri, SCORES)
            return join(root, self.pipeline, f"customer={self.customer}")
        return join(self.lake_uri, zone, self.pipeline, f"customer={self.customer}")

    def run(self, run_key: str) -> RunLayout:
        return RunLayout(self, run_key)

    def raw_table(self, table: str) -> str:
        """A raw table's drops (``dt=<day>/`` folders below it)."""
        return join(self.lake_uri, RAW, f"customer={self.customer}", table)

    @property
    def champion_profile(self) -> str:
        """The champion's feature profile: validate's drift reference, written by the gate on
        promotion in its own zone (only evaluate may say what the champion looks like)."""
        return join(self.zone(EVALUATION), "champion", "feature_profile.json")

    @property
    def champion_history(self) -> str:
        """The audit of ``champion`` moves: one immutable JSON object per move, in the gate's own
        zone (model_steps.champion writes and reads it)."""
        return join(self.zone(EVALUATION), "champion", "history")

    @property
    def baseline_profile(self) -> str:
        """The first run's feature profile: the drift reference before any champion."""
        return join(self.zone(REFERENCE), "feature_profile.json")

    @property
    def last_population_profile(self) -> str:
        """The last population that passed validation: the next population's drift reference."""
        return join(self.zone(REFERENCE), "population_profile.json")

    @property
    def monitoring_report(self) -> str:
        return join(self.zone(MONITORING), "report")

    def contact_claims(self, day: str, *parts: str) -> str:
        """The day's contact claims of every pipeline of the customer (model_steps.contact_claims):
        one folder per customer and data date, in publish's zone (``_claims`` is no pipeline name)."""
        return join(self.lake_uri, PUBLISH, CLAIMS, f"customer={self.customer}", f"day={day}",
                    *parts)  # fmt: skip

    def campaign_policy(self, campaign: str, *parts: str) -> str:
        """A campaign's posterior states (one JSON per version, the run whose outcomes built it)
        and the pointer to the latest: written by the monitor (so in its zone), read by publish."""
        return join(self.zone(MONITORING), "policy", f"campaign={campaign}", *parts)


@dataclass(frozen=True)
class RunLayout:
    """Where one run (one run key) of a customer's pipeline reads and writes."""

    customer: CustomerLayout
    run_key: str

    def path(self, zone: str, *parts: str) -> str:
        """``<zone root>/run=<run key>/<parts>``."""
        return join(self.customer.zone(zone), f"run={self.run_key}", *parts)

    def manifest(self, zone: str) -> str:
        return self.path(zone, MANIFEST)

    @property
    def features(self) -> str:
        return self.path(FEATURES)

    @property
    def population(self) -> str:
        return self.path(POPULATION)

    @property
    def validation(self) -> str:
        return self.path(VALIDATION)

    @property
    def models(self) -> str:
        return self.path(MODELS)

    @property
    def training_profile(self) -> str:
        """The training table's feature profile (train writes it; the gate makes it the drift
        reference of the version it promotes, or restores on a rollback)."""
        return self.path(MODELS, "feature_profile.json")

    @property
    def train_result(self) -> str:
        """The train step's committed result (evaluate reads it)."""
        return self.path(MODELS, "train_result.json")

    def trial_models(self, trial: str) -> str:
        """A tuning trial's checkpoints and MLflow run marker."""
        return self.path(MODELS, "trials", trial)

    def tuning(self, *parts: str) -> str:
        return self.path(TUNING, *parts)

    @property
    def evaluation(self) -> str:
        return self.path(EVALUATION)

    @property
    def decision(self) -> str:
        """The evaluate step's committed decision."""
        return self.path(EVALUATION, "decision.json")

    @property
    def scores(self) -> str:
        return self.path(SCORES)

    @property
    def campaign(self) -> str:
        return self.path(CAMPAIGN)

    def publish(self, *parts: str) -> str:
        return self.path(PUBLISH, *parts)

    @property
    def monitoring(self) -> str:
        return self.path(MONITORING)
