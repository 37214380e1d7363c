"""A run pinned to a registered version: re-score, backfill, roll back, without retraining.

The operator sets the training DAG's *model_version* (mlplatform_contract.steps.PARAM_MODEL_VERSION):
the control plane skips the training stage; the gate (evaluate, the only identity that writes the
registry) checks that the version once passed its gate and that its bytes still match the digest
recorded at registration, then, with *make_champion*, moves ``champion`` to it through the one
audited move (model_steps.champion: actor ``operator``, with the *reason*) and restores that
version's feature profile as validate's drift reference; score scores with the pinned version
whatever the alias says. Publish is untouched: the run has its own run key, so its exactly-once
protocol applies as in any run.

Only versions with the gate's verdict ``passed`` qualify: a refused or never-judged version is
refused here with the list of those that do.
"""

from __future__ import annotations

import logging
from typing import Any

from mlplatform_contract.results import EvaluateResult
from mlplatform_contract.steps import (
    PARAM_ACTOR,
    PARAM_MAKE_CHAMPION,
    PARAM_MODEL_VERSION,
    PARAM_REASON,
    PARAM_REPLACES,
)
from model_steps import lake
from model_steps.champion import VERDICT_TAG, Actor, move_champion
from model_steps.contract import CheckFailed, SkipDownstream, StepContext, UsageError
from model_steps.model_store import DIGEST_TAG, load_version
from model_steps.tracking import champion_version

log = logging.getLogger("model_steps.pinned")


def requested_version(ctx: StepContext) -> str | None:
    """The version this run is pinned to, or None for a training run. *make_champion* without a
    version is a mistake in the trigger form, said at once (exit 2, no retries)."""
    version = ctx.params.get(PARAM_MODEL_VERSION)
    if version in (None, ""):
        if ctx.params.get(PARAM_MAKE_CHAMPION):
            raise UsageError(
                f"params.{PARAM_MAKE_CHAMPION} is set but params.{PARAM_MODEL_VERSION} is empty: "
                "name the version to roll back to"
            )
        return None
    if not str(version).isdigit():
        raise UsageError(f"params.{PARAM_MODEL_VERSION}={version!r} is not a version number")
    return str(int(version))


def actor(ctx: StepContext) -> Actor:
    """Who asks: ``operator`` unless the monitoring DAG's automatic rollback said ``automatic``."""
    who = ctx.params.get(PARAM_ACTOR) or "operator"
    if who not in ("operator", "automatic"):
        raise UsageError(f"params.{PARAM_ACTOR}={who!r} is neither operator nor automatic")
    return who


def stale(ctx: StepContext, champion: str | None) -> str | None:
    """Why a rollback must not move the alias: it names the champion it replaces
    (params.replaces_version, set by the automatic rollback) and the champion moved since."""
    replaces = ctx.params.get(PARAM_REPLACES)
    if replaces in (None, "") or str(replaces) == champion:
        return None
    return (
        f"the rollback replaces v{replaces} but the champion is now "
        f"{'none' if champion is None else f'v{champion}'}: it moved since the request, so "
        "nothing moves and nothing is scored"
    )


def passed_versions(client: Any, name: str) -> list[Any]:
    """Versions of ``name`` that passed their gate, newest first."""
    found = client.search_model_versions(f"name='{name}'")
    passed = [v for v in found if v.tags.get(VERDICT_TAG) == "passed"]
    return sorted(passed, key=lambda v: int(v.version), reverse=True)


def eligible(client: Any, name: str, version: str) -> Any:
    """The registered version, if it passed its gate; else a refusal that lists those that did."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        mv = None
    verdict = None if mv is None else mv.tags.get(VERDICT_TAG)
    if verdict == "passed":
        return mv
    listed = ", ".join(
        f"v{v.version} ({v.tags.get('data_date', '?')})" for v in passed_versions(client, name)
    )
    what = "does not exist" if mv is None else f"has gate verdict {verdict or 'none'}"
    raise CheckFailed(
        f"{name} v{version} {what}: only a version that passed its gate can be scored with or "
        "made champion.",
        f"trigger the run again with model_version set to a version that passed its gate: "
        f"{listed or 'none yet'}.",
    )


def _profile_uri(ctx: StepContext, mv: Any) -> str:
    """The version's feature profile, kept by its training run (run key in the version's tags)."""
    run_key = mv.tags.get("run_key")
    if not run_key:
        return ""
    uri = ctx.layout.customer.run(run_key).training_profile
    return uri if lake.exists(uri) else ""


def decide(ctx: StepContext, name: str, version: str, code: Any = None) -> EvaluateResult:
    """The gate's decision for a pinned run: the version qualifies and its bytes verify (loading
    it checks every file's sha256 against the digest the gate recorded; ``code``: the step's
    model, model_store.load_dir's)."""
    import mlflow

    client = mlflow.MlflowClient()
    mv = eligible(client, name, version)
    load_version(name, version, code)  # refuses a tampered artifact before anything moves
    current = champion_version(name)
    champion = None if current is None else str(current.version)
    moves = bool(ctx.params.get(PARAM_MAKE_CHAMPION))
    promote = moves and champion != version
    reason = str(ctx.params.get(PARAM_REASON) or "no reason given")
    verb = "roll back @champion to" if promote else "score with"
    reasons = [f"pinned by the {actor(ctx)}: {verb} v{version} ({reason})"]
    if moves and not promote:
        reasons.append(f"v{version} is already the champion: the alias stays")
    why_not = stale(ctx, champion) if moves else None
    if why_not:
        promote, reasons = False, [*reasons, why_not]
    return EvaluateResult(
        passed=True, promote=promote, scoring_version=None if why_not else version,
        reasons=reasons, candidate={}, champion=None, registered_model=name,
        candidate_version=version, candidate_digest=mv.tags.get(DIGEST_TAG, ""),
        champion_version=champion, report_uri="", report_files=[],
        scoring_model_uri=None if why_not else f"models:/{name}/{version}",
        decision_uri=ctx.layout.decision, profile_uri=_profile_uri(ctx, mv), pinned=True,
    )  # fmt: skip


def apply(ctx: StepContext, result: EvaluateResult) -> EvaluateResult:
    """Carry out a committed pinned decision (idempotent): on a rollback, the audited alias move
    and the version's drift reference."""
    if result.promote and result.scoring_version is not None:
        reason = str(ctx.params.get(PARAM_REASON) or "no reason given")
        move_champion(
            ctx.layout.customer, result.registered_model, result.scoring_version,
            run_key=ctx.run_key, actor=actor(ctx), reason=reason,
            profile_uri=result.profile_uri or None,
        )  # fmt: skip
        log.info("rolled %s back to v%s", result.registered_model, result.scoring_version)
    if result.scoring_model_uri is None:  # a stale automatic rollback: nothing to score
        raise SkipDownstream("; ".join(result.reasons[-1:]), result)
    return result
