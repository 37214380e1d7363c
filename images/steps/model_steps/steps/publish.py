"""Publish step: push the model's chosen scored rows to the CRM's batch upsert API.

Input, read through its manifest (never by listing the folder)::

    <scores root>/<pipeline>/customer=<tenant>/run=<run key>/_MANIFEST.json   (score step)
        columns: <model key> (string), score | prediction (float), model_version (string)

where the scores root is ``SCORES_URI`` when set (the cluster's scores bucket), else
``<LAKE_URI>/scores`` (:func:`model_steps.scoring.scores_table_uri`, shared with the score step).
The model decides which rows are pushed, in which order (``Model.crm_select``), and what a record
holds (``Model.crm_record``); the platform wraps each as ``{contact_id, model, model_version,
run_key, **the model's fields}`` and cuts them into batches of ``crm.batch_size`` in that fixed order.
The selection is first claimed for the run's data date against the customer's other campaigns of
that day (:mod:`model_steps.contact_claims`: arbitration, the per-day cap, losers recorded); only
the contacts this run won go on. Before sending, a deterministic control arm
(``crm.control_fraction`` of them, a hash of run and contact: :mod:`model_steps.campaign`) is held
out and never sent; both arms are committed to ``<lake>/campaign/…`` for the monitor step's uplift.
Each batch's idempotency key hashes the run, its index and its exact body, so a retried run rebuilds
the same batches with the same keys. Acknowledged keys are saved to::

    <lake>/publish/<pipeline>/customer=<tenant>/run=<run key>/progress.json   (atomically replaced)

and a retry sends only the batches not in it. A batch acknowledged by the CRM but not yet saved (the
step was killed in between) is sent again with the same key: the CRM answers it from its idempotency
store and applies nothing twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from mlplatform_contract.campaigns import Campaign
from mlplatform_contract.environment import StepEnvironment
from mlplatform_contract.results import PublishResult
from model_steps import campaign, campaign_loop, contact_claims, lake, model_loader
from model_steps.contract import (
    ENV_CRM_API_TOKEN,
    ENV_CRM_BASE_URL,
    StepContext,
    StepError,
    UsageError,
)
from model_steps.crm import BatchOutcome, CrmClient, CrmError, CrmStopped, mask, redact_url
from model_steps.model_api import Model, ModelContext
from model_steps.scoring import score_columns, scores_table_uri

log = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"
# What makes two attempts' batches the same: if any differs, earlier keys mostly will not match.
PLAN_IDENTITY = ("records", "batch_size", "scores_attempt", "model_settings")


@dataclass(frozen=True)
class Batch:
    index: int
    key: str
    body: bytes
    records: int


class Terminated(StepError):
    """SIGTERM (Airflow's on_kill, a pod deletion): progress is saved before the step exits."""


def credentials(env: dict[str, str], connection_id: str) -> tuple[str, str]:
    settings = StepEnvironment.of(env)
    base_url, token = settings.crm_base_url, settings.crm_api_token.get_secret_value()
    missing = [n for n, v in ((ENV_CRM_BASE_URL, base_url), (ENV_CRM_API_TOKEN, token)) if not v]
    if missing:  # configuration: a usage error (exit 2), which no retry can fix
        raise UsageError(
            f"{' and '.join(missing)} not set: in the cluster both come from the Secret "
            f"{connection_id.replace('_', '-')} (CRM_BASE_URL may default from the ConfigMap "
            "step-env); in the local runtime the "
            f"LocalStepOperator fills both from the Airflow connection {connection_id!r} "
            f"(crm.connection_id), e.g. AIRFLOW_CONN_{connection_id.upper()}="
            "'http://:<token>@127.0.0.1:8765'"
        )
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in token):  # never echo it: say what is wrong
        raise StepError(
            f"{ENV_CRM_API_TOKEN} contains whitespace, control or non-ASCII characters "
            "(a stray newline in the Secret or connection?)"
        )
    return base_url, token


@dataclass(frozen=True)
class Selection:
    """The rows to publish, in publish order, kept as Arrow columns: records are built as dicts
    one batch at a time, so a few million of them never sit in memory as Python objects."""

    table: Any  # pyarrow.Table: the scores table's columns, the model's choice of rows
    model: Model
    context: ModelContext
    run_key: str
    payloads: Mapping[str, Mapping[str, Any]] | None = None  # variant -> its CRM fields

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        key, name, run_key, payloads = self.model.key, self.model.name, self.run_key, self.payloads
        for start in range(0, len(self), size):
            part = self.table.slice(start, size).to_pylist()
            # fixed key order: a retry builds byte-identical bodies
            yield [
                {
                    "contact_id": row[key],
                    "model": name,
                    "model_version": row["model_version"],
                    "run_key": run_key,
                    **self.model.crm_record(row, self.context),
                    **(campaign_loop.crm_fields(payloads, row) if payloads else {}),
                }
                for row in part
            ]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self.chunks(10_000):
            yield from chunk


def select_records(
    scores_uri: str, model: Model, context: ModelContext, run_key: str
) -> tuple[Selection, int, dict[str, Any]]:
    """(records to publish in their fixed order, rows scored, scores manifest)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        manifest = lake.read_manifest(scores_uri)
    except StepError as exc:
        raise StepError(f"no scores to publish: {exc}") from None
    where = f"scores table {scores_uri} ({manifest.get('attempt')})"
    columns = score_columns(model)
    key, value, classes = model.key, model.output_column, list(model.class_columns)
    for name in manifest.get("files", []):  # only the columns publish needs are read
        missing = [c for c in columns if c not in parquet_columns(scores_uri, manifest, name)]
        if missing:
            raise StepError(
                f"{where} file {name} lacks column(s) {', '.join(missing)}; the score step must "
                f"write {', '.join(columns)}"
            )
    table, manifest = lake.read_parquet_table(scores_uri, columns=list(columns))
    kind = pa.string() if classes else pa.float64()  # the likeliest class, or the value
    schema = pa.schema([(key, pa.string()), *((c, pa.float64()) for c in classes), (value, kind),
                        ("model_version", pa.string())])  # fmt: skip
    if table is None or table.num_rows == 0:
        log.warning("%s has no rows: nothing to publish", where)
        return Selection(schema.empty_table(), model, context, run_key), 0, manifest
    table = pa.table([pc.cast(table[c], schema.field(c).type) for c in columns], schema=schema)
    bad_ids = table[key].null_count + (pc.sum(pc.equal(table[key], "")).as_py() or 0)
    bad_values = sum(table[c].null_count + (pc.sum(pc.is_nan(table[c])).as_py() or 0)
                     for c in classes or [value]) + (table[value].null_count if classes else 0)  # fmt: skip
    if bad_ids or bad_values:
        raise StepError(f"{where}: {bad_ids} empty {key}(s) and {bad_values} null/NaN {value}(s)")
    if pc.count_distinct(table[key]).as_py() != table.num_rows:
        dupes = table.num_rows - pc.count_distinct(table[key]).as_py()
        raise StepError(f"{where}: {dupes} duplicate {key} row(s); one row per {key} expected")
    chosen = model.crm_select(table, context)
    if not isinstance(chosen, pa.Table) or chosen.schema.names != schema.names:
        raise StepError(
            f"model {model.name}: crm_select must return the scores table's rows (an Arrow table "
            f"with columns {', '.join(columns)})"
        )
    return Selection(chosen, model, context, run_key), table.num_rows, manifest


def parquet_columns(table_uri: str, manifest: dict[str, Any], name: str) -> list[str]:
    import pyarrow.parquet as pq

    fs, path = lake.filesystem(lake.join(table_uri, manifest["attempt"], name))
    with fs.open(path, "rb") as fh:
        return list(pq.read_schema(fh).names)


def iter_batches(
    records: Selection | list[dict[str, Any]], batch_size: int, identity: str
) -> Iterator[Batch]:
    """Fixed batches, built lazily; the key hashes the run identity, the index and the exact body."""
    if isinstance(records, Selection):
        chunks: Iterable[list[dict[str, Any]]] = records.chunks(batch_size)
    else:
        chunks = (records[i : i + batch_size] for i in range(0, len(records), batch_size))
    for index, chunk in enumerate(chunks):
        # records are built with a fixed key order, so the body is byte-identical on every retry
        body = json.dumps({"records": chunk}, separators=(",", ":")).encode()
        digest = hashlib.sha256(f"{identity}\n{index}\n".encode() + body).hexdigest()
        yield Batch(index=index, key=f"mlops-{digest}", body=body, records=len(chunk))


def plan_batches(
    records: Selection | list[dict[str, Any]], batch_size: int, identity: str
) -> list[Batch]:
    return list(iter_batches(records, batch_size, identity))


class Checkpoint:
    """The acknowledged batch keys of this run, atomically replaced in the lake."""

    def __init__(self, uri: str, plan: dict[str, Any], interval: float) -> None:
        self.uri = uri
        self.plan = plan
        self.interval = interval
        self.acked: set[str] = set()
        self.previous: dict[str, Any] | None = None
        self._saved_at = 0.0
        self._dirty = False

    def load(self) -> frozenset[str]:
        """Keys acknowledged by earlier attempts (kept in ``acked``; returned frozen)."""
        if not lake.exists(self.uri):
            return frozenset()
        try:
            self.previous = lake.read_json(self.uri)
            self.acked = set(self.previous.get("acked", []))
        except (ValueError, AttributeError, TypeError):
            log.warning("checkpoint %s is unreadable; sending every batch again", self.uri)
            return frozenset()
        before = {k: self.previous.get("plan", {}).get(k) for k in PLAN_IDENTITY}
        if before != {k: self.plan.get(k) for k in PLAN_IDENTITY}:
            log.warning(
                "checkpoint %s was written for other scores or settings (%s, now %s): only its "
                "batches that are byte-identical stay skipped; the rest are sent",
                self.uri, before, {k: self.plan.get(k) for k in PLAN_IDENTITY},
            )  # fmt: skip
        return frozenset(self.acked)

    def keep_only(self, keys: set[str]) -> None:
        """Drop keys of an older plan (at the end of a complete run)."""
        self.acked &= keys

    def ack(self, key: str) -> None:
        self.acked.add(key)
        self._dirty = True
        if time.monotonic() - self._saved_at >= self.interval:
            self.save()

    def save(self, complete: bool = False) -> None:
        if not self._dirty and not complete:
            return
        lake.write_json_atomic(
            self.uri,
            {
                "plan": self.plan,
                "acked": sorted(self.acked),
                "acked_batches": len(self.acked),
                "complete": complete,
                "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
        )
        self._saved_at = time.monotonic()
        self._dirty = False


def send_batches(
    client: CrmClient,
    batches: Iterable[Batch],
    max_concurrency: int,
    on_ack: Any,
) -> tuple[list[BatchOutcome], BaseException | None, list[Batch]]:
    """Send with at most ``max_concurrency`` batches in flight; stop at the first hard failure.

    ``batches`` may be a generator: the next batch is built only when a slot frees up, so planning
    overlaps sending and only the batches in flight are held in memory. Returns the outcomes of
    acknowledged batches (``on_ack`` already called for each, in this thread), the error that
    stopped sending, if any, and the batches the CRM refused (a final answer that
    is not a 2xx: rejected, bad credentials, or still failing after the retries; a batch merely
    not sent because sending stopped is not refused). Batches in flight when sending stops are
    waited for, and recorded if they were acknowledged.
    """
    outcomes: list[BatchOutcome] = []
    error: BaseException | None = None
    refused: list[Batch] = []
    pending = iter(batches)
    inflight: dict[Future[BatchOutcome], Batch] = {}

    def record(future: Future[BatchOutcome], batch: Batch) -> None:
        nonlocal error
        exc = future.exception()
        if exc is None:
            outcome = future.result()
            outcomes.append(outcome)
            on_ack(outcome)
            return
        if isinstance(exc, CrmError) and not isinstance(exc, CrmStopped):
            refused.append(batch)
        if error is None:
            error = exc

    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="crm") as pool:

        def fill() -> None:
            while error is None and len(inflight) < max_concurrency:
                batch = next(pending, None)
                if batch is None:
                    return
                future = pool.submit(client.upsert_batch, batch.body, batch.key, batch.records)
                inflight[future] = batch

        try:
            fill()
            while inflight:
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    record(future, inflight.pop(future))
                if error is not None:
                    client.stop.set()
                fill()
        except BaseException as exc:  # SIGTERM / Ctrl-C while waiting
            client.stop.set()
            error = error or exc
            _drain(inflight, record)
    return outcomes, error, refused


def _drain(inflight: dict[Future[BatchOutcome], Batch], record: Any) -> None:
    """Sending stopped: cancel what has not started, wait for the requests already on the wire and
    record them (an acknowledged batch is kept in the checkpoint)."""
    for future in list(inflight):
        future.cancel()
    for future in list(inflight):
        if not future.cancelled():
            try:
                future.exception()  # waits for the request already on the wire
            except BaseException:  # cancelled between the two checks
                continue
            record(future, inflight[future])


@dataclass(frozen=True)
class Contest:
    """This run's part of the day's arbitration (model_steps.contact_claims)."""

    slot: int
    claimed: int
    owned: int
    beaten_by: dict[str, int]  # the campaign that took a contact (or "cap") -> contacts lost
    uri: str

    def manifest(self) -> dict[str, Any]:
        return {"arbitration": {"slot": self.slot, "claimed": self.claimed, "owned": self.owned,
                                "lost": self.claimed - self.owned, "beaten_by": self.beaten_by,
                                "claims_uri": self.uri}}  # fmt: skip


def arbitrate_selection(
    ctx: StepContext, loaded: model_loader.LoadedModel, chosen: Selection
) -> tuple[Selection, Contest]:
    """Claim the model's selection for the day, read the committed decision, keep what this run
    owns (in selection order): the control arm is drawn from those contacts only."""
    import numpy as np
    import pyarrow.compute as pc

    spec, model = campaign_loop.declared(loaded.platform), loaded.model
    rules = loaded.platform.crm.arbitration
    keys = chosen.table[model.key].to_pylist()
    values = (np.zeros(len(keys)) if model.class_columns else
              np.nan_to_num(chosen.table[model.output_column].to_numpy(zero_copy_only=False)))  # fmt: skip
    record = {"pipeline": ctx.pipeline, "campaign": spec.id if spec else ctx.pipeline,
              "run_key": ctx.run_key, "priority": spec.priority if spec else 0,
              "rule": rules.rule, "cap": rules.cap_per_day}  # fmt: skip
    day = ctx.layout.customer.contact_claims(ctx.data_date.isoformat())
    mine = contact_claims.claim(day, record, keys, values)
    decided = contact_claims.decision(mine)
    won = decided.filter(decided["won"])["contact"]
    owned = chosen.table.filter(pc.is_in(chosen.table[model.key], value_set=won.combine_chunks()))
    lost = decided.filter(pc.invert(decided["won"]))["beaten_by"].to_pylist()
    beaten = dict(sorted(Counter(b or "cap" for b in lost).items()))
    if lost:
        log.info("arbitration (%s, cap %d a day): %d of %d selected contacts go to other campaigns "
                 "or are capped, recorded in %s: %s", rules.rule, rules.cap_per_day, len(lost),
                 len(keys), day, beaten)  # fmt: skip
    contest = Contest(mine.slot, len(keys), owned.num_rows, beaten, day)
    return Selection(owned, model, chosen.context, chosen.run_key), contest


def hold_out_control(
    ctx: StepContext, chosen: Selection, scores: dict[str, Any], fraction: float, identity: str,
    spec: Campaign | None = None, contest: Contest | None = None,
) -> tuple[Selection, dict[str, int]]:  # fmt: skip
    """Split off the control arm and, when the settings declare a campaign, draw each treated
    contact's variant; commit both arms (with the variants and propensities) before anything is
    sent, so the record of who got what exists whenever a record reached the CRM; return the
    treated selection."""
    treated, assignment = campaign.split(chosen.table, chosen.model.key, identity, fraction)
    arms = {campaign.TREATED: treated.num_rows, campaign.CONTROL: len(chosen) - treated.num_rows}
    variants: dict[str, Any] = {}
    payloads = None
    if spec is not None:
        drawn = campaign_loop.allocate(ctx, spec, treated, assignment, chosen.model.key, identity)
        treated, assignment, variants, payloads = (drawn.treated, drawn.assignment,
                                                   drawn.manifest, drawn.payloads)  # fmt: skip
    lake.commit_parquet_table(
        ctx.layout.campaign,
        [assignment],
        {
            "table": "campaign", "pipeline": ctx.pipeline, "customer": ctx.customer,
            "run_key": ctx.run_key, "data_date": ctx.data_date.isoformat(),
            "model": chosen.model.name, "key": chosen.model.key,
            "control_fraction": fraction, "arms": arms,
            "scores_attempt": scores.get("attempt"), "model_version": scores.get("model_version"),
            **variants, **(contest.manifest() if contest else {}),
        },
    )  # fmt: skip
    log.info(
        "campaign: %d selected, %d treated, %d held out as control (fraction %.2f)",
        len(chosen), arms[campaign.TREATED], arms[campaign.CONTROL], fraction,
    )  # fmt: skip
    return Selection(treated, chosen.model, chosen.context, chosen.run_key, payloads), arms


@dataclass
class Plan:
    """What this attempt sends: the treated records in fixed batches, and the checkpoint of the
    batches earlier attempts got acknowledged."""

    records: Selection
    chosen: Selection
    contest: Contest
    arms: dict[str, int]
    scored_rows: int
    scores_uri: str
    batch_size: int
    batches: int
    identity: str
    checkpoint: Checkpoint
    earlier: frozenset[str]
    planned: set[str] = field(default_factory=set)
    skipped: dict[str, int] = field(default_factory=lambda: {"batches": 0, "records": 0})

    def todo(self) -> Iterator[Batch]:
        """The plan's batches minus those an earlier attempt got acknowledged, built lazily."""
        for batch in iter_batches(self.records, self.batch_size, self.identity):
            self.planned.add(batch.key)
            if batch.key in self.earlier:
                self.skipped["batches"] += 1
                self.skipped["records"] += batch.records
                continue
            yield batch


@dataclass
class Sent:
    """How sending ended: the acknowledged outcomes, the error that stopped it, refused records."""

    outcomes: list[BatchOutcome]
    error: BaseException | None
    refused: list[Batch]


def plan_publish(ctx: StepContext, loaded: model_loader.LoadedModel) -> Plan:
    """Select the records, hold out the control arm, cut batches, load the checkpoint."""
    s = loaded.platform.crm
    scores_uri = scores_table_uri(ctx)
    context = model_loader.model_context(ctx, loaded)
    selected, scored_rows, manifest = select_records(scores_uri, loaded.model, context, ctx.run_key)
    chosen, contest = arbitrate_selection(ctx, loaded, selected)
    own_settings = json.dumps(loaded.settings.model_dump(mode="json"), sort_keys=True)
    identity = f"{ctx.pipeline}/{ctx.customer}/{ctx.run_key}"
    records, arms = hold_out_control(ctx, chosen, manifest, float(s.control_fraction), identity,
                                     campaign_loop.declared(loaded.platform), contest)  # fmt: skip
    batch_size = int(s.batch_size)
    n_batches = -(-len(records) // batch_size)
    plan = {
        "records": len(records),
        "batches": n_batches,
        "batch_size": batch_size,
        "scores_attempt": manifest.get("attempt"),
        "model_settings": hashlib.sha256(own_settings.encode()).hexdigest()[:16],
        "run_id": ctx.run_id,
    }
    progress_uri = ctx.layout.publish(PROGRESS_FILE)
    checkpoint = Checkpoint(progress_uri, plan, float(s.checkpoint_interval_seconds))
    earlier = checkpoint.load()
    return Plan(records, chosen, contest, arms, scored_rows, scores_uri, batch_size, n_batches,
                identity,
                checkpoint, earlier)  # fmt: skip


def send_plan(plan: Plan, client: CrmClient, max_concurrency: int) -> Sent:
    """Send the plan's batches (SIGTERM saves progress), then save the checkpoint."""
    progress = {"records": 0, "batches": 0, "logged_at": time.monotonic()}

    def on_ack(outcome: BatchOutcome) -> None:
        plan.checkpoint.ack(outcome.key)
        progress["records"] += outcome.records
        progress["batches"] += 1
        if time.monotonic() - progress["logged_at"] >= 5:
            progress["logged_at"] = time.monotonic()
            done = progress["batches"] + plan.skipped["batches"]
            log.info("sent %d/%d batches", done, plan.batches)

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the saving short
        raise Terminated("terminated (SIGTERM) while publishing; progress saved for the retry")

    in_main = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    try:
        outcomes, error, refused = send_batches(client, plan.todo(), max_concurrency, on_ack)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous_handler)
        client.close()
    if error is None:
        plan.checkpoint.keep_only(plan.planned)
    plan.checkpoint.save(complete=error is None)
    return Sent(outcomes, error, refused)


def publish_result(
    plan: Plan, sent: Sent, loaded: model_loader.LoadedModel, ctx: StepContext, seconds: float
) -> PublishResult:
    retries: Counter[str] = Counter()
    for o in sent.outcomes:
        retries.update(o.retries)
    return PublishResult(
        records=len(plan.records),
        selected=plan.contest.claimed,
        owned=plan.contest.owned,
        lost=plan.contest.claimed - plan.contest.owned,
        lost_to=plan.contest.beaten_by,
        claims_uri=plan.contest.uri,
        arms=plan.arms,
        campaign_uri=ctx.layout.campaign,
        scored_rows=plan.scored_rows,
        batches=plan.batches,
        sent_batches=len(sent.outcomes),
        sent_records=sum(o.records for o in sent.outcomes),
        failed_batches=len(sent.refused),
        failed_records=sum(b.records for b in sent.refused),
        skipped_batches=plan.skipped["batches"],
        skipped_records=plan.skipped["records"],
        replayed_batches=sum(o.replayed for o in sent.outcomes),
        retries=sum(retries.values()),
        retries_by_reason=dict(sorted(retries.items())),
        scores_uri=plan.scores_uri,
        checkpoint_uri=plan.checkpoint.uri,
        model=loaded.model.name,
        seconds=round(seconds, 2),
    )


def failure(error: BaseException, result: PublishResult, token: str) -> StepError:
    """The step's error for what stopped sending, the token masked, carrying the partial result
    (its failed_records are pushed as metrics)."""
    acked = result.skipped_batches + result.sent_batches
    prefix = f"publish stopped after {acked}/{result.batches} acknowledged batches"
    if isinstance(error, StepError):
        message, kind = f"{prefix}: {error}", type(error)
    elif isinstance(error, OSError):
        message, kind = f"{prefix}: {mask(str(error), token)}", StepError
    else:  # a bug, not the CRM: keep the traceback for the log, with the token masked
        trace = "".join(traceback.format_exception(error))
        log.error("unexpected error while sending:\n%s", mask(trace, token))
        message = f"{prefix}: {type(error).__name__}: {mask(str(error), token)}"
        kind = StepError
    return kind(message, result=result.model_copy(update={"error": message}))


def run(ctx: StepContext) -> PublishResult:
    started = time.monotonic()
    loaded = model_loader.load(ctx)
    s = loaded.platform.crm
    base_url, token = credentials(ctx.env, s.connection_id)
    plan = plan_publish(ctx, loaded)
    log.info(
        "publishing %d of %d scored rows (chosen by %s) to %s: %d batches of <= %d, "
        "concurrency %d; checkpoint %s holds %d acknowledged batches",
        len(plan.records), plan.scored_rows, loaded.model.name, redact_url(base_url), plan.batches,
        plan.batch_size, s.max_concurrency, plan.checkpoint.uri, len(plan.earlier),
    )  # fmt: skip
    client = CrmClient(
        base_url,
        token,
        timeout=float(s.timeout_seconds),
        max_retries=int(s.max_retries),
        backoff_max=float(s.backoff_max_seconds),
        max_connections=int(s.max_concurrency),  # one pooled connection per sender
    )
    sent = send_plan(plan, client, int(s.max_concurrency))
    result = publish_result(plan, sent, loaded, ctx, time.monotonic() - started)
    if sent.error is not None:
        raise failure(sent.error, result, token) from None
    log.info(
        "published %d records in %d batches (%d skipped as already sent, %d retries) in %.1fs",
        result.sent_records, result.sent_batches, result.skipped_batches, result.retries,
        result.seconds,
    )  # fmt: skip
    return result
