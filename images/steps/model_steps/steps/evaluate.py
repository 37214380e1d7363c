"""Evaluate step: the gate between a trained candidate and the customers.

Verifies the training run's model directory against the digest train recorded, registers exactly
it as a new version (only the gate writes the registry), scores the run's holdout with it and the
current champion (alias ``champion``, verified against its version's digest tag), applies the
module's gate policy (model_steps.gate), writes the decision and a report (HTML + PNG plots) to the
lake and to the candidate's MLflow run, tags the version with the verdict (``mlops.gate_verdict``:
refused candidates stay registered, so every trained model's bytes and verdict are in one place and
a rollback can pick passed versions only), and on pass moves the alias (an audited event:
model_steps.champion) and the champion's feature profile (the validate step's drift reference).

Lake layout::

    evaluation/<pipeline>/customer=<c>/run=<key>/decision.json    written last: a retry of a
                                                                   decided run reuses it
    evaluation/<pipeline>/customer=<c>/run=<key>/report/{index.html,*.png}
    evaluation/<pipeline>/customer=<c>/champion/feature_profile.json  copied on promotion

Exit: 0 when there is a model to score with (the candidate, or the champion under the
``score_with_champion`` policy); 99 (skip downstream) when nothing may be scored.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from mlplatform_contract.results import EvaluateResult, TrainResult
from model_steps import gate, lake, model_loader, model_store, pinned
from model_steps.champion import VERDICT_TAG, move_champion
from model_steps.contract import SkipDownstream, StepContext, StepError
from model_steps.model_api import Model
from model_steps.model_store import DIGEST_TAG, ModelRefused, load_version
from model_steps.tracking import (
    CHAMPION_ALIAS,
    champion_version,
    connect,
    registered_model_name,
    tracking_uri,
)

log = logging.getLogger("model_steps.evaluate")


def _holdout(features_uri: str, model: Model, training: Any) -> Any:
    from model_steps.profile import read_table
    from model_steps.training import holdout_mask

    df = read_table(features_uri)
    hold = holdout_mask(df[model.key].to_numpy(), training.holdout_fraction, training.seed)
    return df[hold].reset_index(drop=True)


def _predict(served: Any, model: Model, frame: Any) -> Any:
    from model_steps.serving import predictions

    return predictions(served, model, frame)


def _report(
    out_dir: Path, y: Any, scores: dict[str, Any], decision: gate.Decision, model: Model
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files.append(name)

    if not model.class_columns:  # curves of one score; several classes: the comparison only
        _curves(plt, save, y, scores, model)
        _calibration(plt, save, y, scores)
    _comparison(plt, save, decision, model)
    html = _index_html(decision, model, files)
    (out_dir / "index.html").write_text(html)
    return [*files, "index.html"]


def _curves(plt: Any, save: Any, y: Any, scores: dict[str, Any], model: Model) -> None:
    """ROC and PR curves (a classifier), predicted vs actual (a regression)."""
    import numpy as np

    def curve(p: Any, kind: str) -> tuple[Any, Any]:
        order = np.argsort(-p, kind="mergesort")
        hits = y[order].astype(bool)
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        if kind == "roc":
            return fp / max(fp[-1], 1), tp / max(tp[-1], 1)
        return tp / max(tp[-1], 1), tp / np.arange(1, len(p) + 1)

    curves = {"roc": ("false positive rate", "true positive rate"), "pr": ("recall", "precision")}
    if model.task == "regression":
        curves = {}
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, p in scores.items():
            ax.scatter(y, p, s=4, alpha=0.3, label=name)
        top = float(max(np.max(y), *(np.max(p) for p in scores.values())))
        ax.plot([0, top], [0, top], "k:", lw=0.8)
        ax.set(xlabel="actual", ylabel="predicted", title="predicted vs actual (holdout)")
        ax.legend()
        save(fig, "predicted_vs_actual.png")
    for kind, (xl, yl) in curves.items():
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, p in scores.items():
            ax.plot(*curve(p, kind), label=name)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel=xl, ylabel=yl, title=kind.upper())
        ax.legend()
        save(fig, f"{kind}.png")


def _calibration(plt: Any, save: Any, y: Any, scores: dict[str, Any]) -> None:
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, p in scores.items():
        bins = np.quantile(p, np.linspace(0, 1, 11))
        idx = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 9)
        ax.plot([p[idx == b].mean() for b in range(10) if (idx == b).any()],
                [y[idx == b].mean() for b in range(10) if (idx == b).any()], "o-", label=name)  # fmt: skip
    top = max(float(p.max()) for p in scores.values())
    ax.plot([0, top], [0, top], "k:", lw=0.8)
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="calibration (deciles)")
    ax.legend()
    save(fig, "calibration.png")


def _comparison(plt: Any, save: Any, decision: gate.Decision, model: Model) -> None:
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    names = [m for m in model.task_info.metrics if m in decision.candidate]
    width = 0.38
    ax.bar(
        np.arange(len(names)) - width / 2,
        [decision.candidate[m] for m in names],
        width,
        label="candidate",
    )
    if decision.champion:
        ax.bar(
            np.arange(len(names)) + width / 2,
            [decision.champion[m] for m in names],
            width,
            label="champion",
        )
    ax.set_xticks(np.arange(len(names)), names, rotation=20)
    ax.set(title="champion vs candidate")
    ax.legend()
    save(fig, "comparison.png")


def _index_html(decision: gate.Decision, model: Model, files: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{m}</td><td>{decision.candidate.get(m)}</td>"
        f"<td>{(decision.champion or {}).get(m, '—')}</td></tr>"
        for m in (*model.task_info.metrics, "rows")
    )
    verdict = "PASSED" if decision.passed else "REFUSED"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation</title></head><body>"
        f"<h1>Gate {verdict}</h1><ul>{''.join(f'<li>{r}</li>' for r in decision.reasons)}</ul>"
        f"<table border=1><tr><th>metric</th><th>candidate</th><th>champion</th></tr>{rows}</table>"
        + "".join(f"<p><img src='{f}'></p>" for f in files)
        + "</body></html>"
    )


def run(ctx: StepContext) -> EvaluateResult:
    """Decide once (a retry reuses the committed decision instead of comparing the candidate with
    itself, or with a champion it already replaced), then carry the decision out. A run pinned to
    a registered version (re-score, rollback) is judged by model_steps.pinned instead."""
    if (version := pinned.requested_version(ctx)) is not None:
        connect(tracking_uri(ctx))
        name = registered_model_name(ctx.pipeline, ctx.customer)
        code = model_loader.load(ctx).model  # what a pytorch version's architecture is built by
        result = lake.once(
            ctx.layout.decision, lambda: pinned.decide(ctx, name, version, code), load=_reused,
            dump=EvaluateResult.to_xcom,
        )  # fmt: skip
        return pinned.apply(ctx, result)
    result = lake.once(
        ctx.layout.decision, lambda: _decide(ctx), load=_reused, dump=EvaluateResult.to_xcom
    )
    return _apply(ctx, result)


def _reused(payload: Any) -> EvaluateResult:
    log.info("decision already made for this run: reusing it")
    return EvaluateResult.model_validate(payload)


def _trained(ctx: StepContext) -> TrainResult:
    train_uri = ctx.layout.train_result
    if not lake.exists(train_uri):
        raise StepError(
            f"{train_uri} does not exist: the train step has not completed for this run"
        )
    return TrainResult.model_validate(lake.read_json(train_uri))


def _write_report(
    ctx: StepContext, trained: TrainResult, holdout: tuple[Any, dict[str, Any], dict[str, Any]],
    decision: gate.Decision, model: Model,
) -> tuple[str, list[str]]:  # fmt: skip
    """The report (plots and index.html) into the lake and the candidate's MLflow run, with the
    decision and the gate's metrics: (report folder, its files)."""
    import mlflow

    y, scores, measured = holdout
    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        files = _report(Path(tmp), y, scores, decision, model)
        report_uri = lake.join(ctx.layout.evaluation, "report")
        lake.put_tree(tmp, report_uri)
        with mlflow.start_run(run_id=trained.mlflow_run_id):
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
            mlflow.log_dict(decision.as_dict(), "evaluation/decision.json")
            mlflow.log_metrics({f"gate_{k}": v for k, v in measured["candidate"].items()})
            mlflow.set_tag("gate.passed", str(decision.passed).lower())
    return report_uri, files


def _decide(ctx: StepContext) -> EvaluateResult:
    """Verify and register the candidate, score the holdout with it and the champion, apply the
    gate, write the report."""
    trained = _trained(ctx)
    loaded = model_loader.load(ctx)
    model = loaded.model
    uri = tracking_uri(ctx)
    connect(uri)
    name = registered_model_name(ctx.pipeline, ctx.customer)
    served, candidate_version, digest = _register_candidate(ctx, trained, name, model)
    champ = champion_version(name)
    champion: str | None = None if champ is None else str(champ.version)

    holdout = _holdout(trained.features_uri, model, loaded.platform.training)
    y = holdout[model.label_column].to_numpy()
    scores = {"candidate": _predict(served, model, holdout)}  # the very bytes just registered
    if champion == candidate_version:
        champion = None  # promoted by an earlier attempt that died before deciding
    if champion is not None:
        scores["champion"] = _predict(load_version(name, champion, model), model, holdout)
    measured = {k: gate.metrics(model.task, y, p) for k, p in scores.items()}
    decision = gate.decide(
        loaded.platform.gate.model_dump(), measured["candidate"], candidate_version,
        measured.get("champion"), champion, task=model.task,
        force_promote=bool(ctx.params.get("force_promote")),
    )  # fmt: skip
    for reason in decision.reasons:
        log.info("gate: %s", reason)

    report_uri, files = _write_report(ctx, trained, (y, scores, measured), decision, model)
    result = EvaluateResult(
        **decision.as_dict(),
        registered_model=name,
        candidate_version=candidate_version,
        candidate_digest=digest,
        champion_version=champion,
        scoring_model_uri=f"models:/{name}/{decision.scoring_version}"
        if decision.scoring_version
        else None,
        report_uri=lake.join(report_uri, "index.html"),
        report_files=files,
        decision_uri=ctx.layout.decision,
        profile_uri=trained.profile_uri,
    )
    # The decision is committed (lake.once) before it is applied, so a retry after a crash in
    # between applies the same decision instead of comparing the candidate with itself.
    return result


def _register_candidate(
    ctx: StepContext, trained: TrainResult, name: str, model: Model
) -> tuple[Any, str, str]:
    """Download the training run's model directory, verify it against the digest train recorded
    (run tag and train_result.json agree), load it, then register exactly it as a new version
    tagged with that digest (a retry finds the version it registered): (served, version, digest).
    Only the gate writes the registry (docs/registry-access.md)."""
    import mlflow

    client = mlflow.MlflowClient()
    run_id = trained.mlflow_run_id
    digest = client.get_run(run_id).data.tags.get(DIGEST_TAG)
    if trained.model_digest and digest != trained.model_digest:
        raise ModelRefused(f"candidate of run {run_id}: the run's {DIGEST_TAG} {digest} is not "
                           f"the digest train reported ({trained.model_digest})")  # fmt: skip
    served = model_store.load_run(run_id, digest, f"candidate of {name} (run {run_id})", model)
    found = [v for v in client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
             if v.tags.get(DIGEST_TAG) == digest]  # fmt: skip
    if found:
        return served, str(found[0].version), str(digest)
    _ensure_registered_model(ctx, client, name, model)
    tags = _version_tags(ctx, trained, client, str(digest), model)
    source = f"runs:/{run_id}/{model_store.MODEL_ARTIFACT}"
    mv = client.create_model_version(name, source, run_id, tags=tags)
    log.info("registered %s v%s (run %s, digest %s)", name, mv.version, run_id, digest)
    return served, str(mv.version), str(digest)


def _ensure_registered_model(ctx: StepContext, client: Any, name: str, model: Model) -> None:
    """The customer's registered model (the provisioning creates it; a registry without
    provisioning, as in the workload tests, gets it here) with its pipeline, customer and task."""
    from mlflow.exceptions import MlflowException

    tags = {"pipeline": ctx.pipeline, "customer": ctx.customer, "task": model.task}
    try:
        have = client.get_registered_model(name).tags
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name, tags=tags)
        return
    for k, v in tags.items():
        if have.get(k) != v:
            client.set_registered_model_tag(name, k, v)


def _version_tags(
    ctx: StepContext, trained: TrainResult, client: Any, digest: str, model: Model
) -> dict[str, str]:
    """A version's lineage: digest first (what loaders verify), then where it came from."""
    run_tags = client.get_run(trained.mlflow_run_id).data.tags
    headline = model.task_info.default_metric
    tags = {DIGEST_TAG: digest, "run_key": ctx.run_key, "data_date": ctx.data_date.isoformat(),
            "model": trained.model, "task": trained.task, "features_uri": trained.features_uri,
            headline: trained.metrics[headline]}  # fmt: skip
    if trained.tuning:
        tags["tuning_trial"] = trained.tuning["trial"]
        tags["tuning_parent_run_id"] = run_tags.get("tuning.parent_run_id", "")
    return {k: str(v) for k, v in tags.items()}


def _apply(ctx: StepContext, result: EvaluateResult) -> EvaluateResult:
    """Carry out a committed decision (idempotent): the verdict on the candidate version, and on
    promotion the alias and the drift reference."""
    import mlflow

    connect(tracking_uri(ctx))
    name, version = result.registered_model, result.candidate_version
    mlflow.MlflowClient().set_model_version_tag(
        name, version, VERDICT_TAG, "passed" if result.passed else "refused"
    )
    if result.promote:
        move_champion(ctx.layout.customer, name, version, run_key=ctx.run_key, actor="gate",
                      reason="; ".join(result.reasons), profile_uri=result.profile_uri)  # fmt: skip
        log.info("promoted %s v%s to @%s", name, version, CHAMPION_ALIAS)
    if result.scoring_model_uri is None:
        raise SkipDownstream("; ".join(result.reasons[-2:]), result)
    return result
