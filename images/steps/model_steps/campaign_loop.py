"""Campaign experiments in the steps: publish allocates variants, the monitor learns from outcomes.

When the customer's settings declare a campaign (``crm.campaign``,
:class:`mlplatform_contract.campaigns.Campaign`), publish gives every treated contact a variant drawn
from the policy for its segment (:mod:`model_steps.bandit`) and commits, with the campaign's arms
and before the first CRM batch, each contact's segment, variant and propensity; the manifest names
the campaign, the live variants, the shares per segment and the **policy version** (the posterior
state the shares came from). A retry reads that version again, not the newest state, so it draws
exactly the same variants and rebuilds byte-identical batches even if the monitor learned in between.

Once the run's label window has closed the monitor folds each treated contact's reward into the
counts of its (segment, variant), commits the new state as a version named by the scored run, and
points the campaign's ``latest`` at it, which the next publish reads::

    <lake>/monitoring/<pipeline>/customer=<c>/policy/campaign=<id>/state-<version>.json, latest.json

It also estimates off-policy what other allocations would have earned on the same contacts
(:mod:`model_steps.ope`): the logging policy itself, uniform, and greedy on the updated posterior.
A run whose outcomes have not landed stays pending in the monitor, and the state stays as it is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlplatform_contract import layout
from mlplatform_contract.campaigns import Campaign
from mlplatform_contract.results import CampaignFigures
from model_steps import bandit, campaign, lake, ope
from model_steps.contract import StepContext, StepError

log = logging.getLogger(__name__)

SEGMENT, VARIANT, PROPENSITY = "segment", "variant", "propensity"
ONE_SEGMENT = "all"  # the segment of every contact when the campaign declares no segment column
LATEST = "latest.json"
PRIOR_VERSION = "prior"
SETTING = "crm.campaign"


@dataclass(frozen=True)
class Allocation:
    """The treated rows with their variants, both arms for the commit, what the manifest adds."""

    treated: Any  # pyarrow.Table: treated rows + segment, variant, propensity
    assignment: Any  # pyarrow.Table: both arms (control rows: null variant and propensity)
    manifest: dict[str, Any]
    payloads: Mapping[str, Mapping[str, Any]]  # variant id -> its CRM fields


def declared(platform: Any) -> Campaign | None:
    """The campaign of the customer's settings (``crm.campaign``), if any."""
    return platform.crm.campaign


# --- the posterior state --------------------------------------------------------------------


def state_uri(ctx: StepContext, name: str, version: str) -> str:
    return ctx.layout.customer.campaign_policy(name, f"state-{version}.json")


def latest_version(ctx: StepContext, name: str) -> str:
    uri = ctx.layout.customer.campaign_policy(name, LATEST)
    return str(lake.read_json(uri)["version"]) if lake.exists(uri) else PRIOR_VERSION


def read_state(ctx: StepContext, name: str, version: str) -> bandit.PolicyState:
    """The state of ``version`` (JSON, validated; never code); the prior when none was learned."""
    if version == PRIOR_VERSION:
        return bandit.PolicyState(campaign=name)
    uri = state_uri(ctx, name, version)
    if not lake.exists(uri):
        raise StepError(f"campaign {name}: policy state {version} is missing at {uri}")
    return bandit.PolicyState.model_validate(lake.read_json(uri))


def pinned_version(ctx: StepContext) -> str | None:
    """The policy version an earlier attempt of this run committed its assignment with."""
    uri = lake.join(ctx.layout.campaign, lake.MANIFEST)
    return lake.read_json(uri).get("policy_version") if lake.exists(uri) else None


# --- publish: who gets which variant ------------------------------------------------------------


def segments_of(ctx: StepContext, spec: Campaign, table: Any, key: str) -> list[str]:
    """Each row's segment: the declared column of the selection, else of the run's population."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = spec.segment_column
    if column is None:
        return [ONE_SEGMENT] * table.num_rows
    if column in table.column_names:
        values = table[column]
    else:
        source = ctx.layout.population
        found = lake.exists(lake.join(source, lake.MANIFEST))
        names = lake.read_manifest(source).get("schema", {}) if found else {}
        if column not in names:
            raise StepError(
                f"{SETTING}.segment_column {column!r} is neither a column of the selection nor "
                f"of the population table {source}"
            )
        population, _ = lake.read_parquet_table(source, columns=[key, column])
        population = pa.table({key: pc.cast(population[key], pa.string()),
                               column: population[column]})  # fmt: skip
        keyed = table.select([key]).append_column(
            "_row", pa.array(range(table.num_rows), pa.int64())
        )
        values = keyed.join(population, key, join_type="left outer").sort_by("_row")[column]
    text = pc.cast(values, pa.string())
    return pc.fill_null(text, ONE_SEGMENT).to_pylist()


def share_table(
    spec: Campaign, state: bandit.PolicyState, segments: Sequence[str], identity: str
) -> dict[str, np.ndarray]:
    """The shares of the live variants in each segment (sum 1 each, every one ≥ the floor)."""
    live = [v.id for v in spec.live()]
    return {s: bandit.shares(state, s, live, spec.policy, identity) for s in sorted(set(segments))}


def allocate(
    ctx: StepContext, spec: Campaign, treated: Any, assignment: Any, key: str, identity: str
) -> Allocation:
    """Draw each treated contact's variant; the same on a retry (the policy version is pinned)."""
    import pyarrow as pa

    version = pinned_version(ctx) or latest_version(ctx, spec.id)
    state = read_state(ctx, spec.id, version)
    segments = segments_of(ctx, spec, treated, key)
    table = share_table(spec, state, segments, identity)
    live = [v.id for v in spec.live()]
    drawn = bandit.assign(treated[key].to_pylist(), segments, table, live, identity)
    added = (SEGMENT, VARIANT, PROPENSITY)  # replace a selection's own column of the same name
    treated = treated.drop_columns([c for c in added if c in treated.column_names])
    assignment = assignment.drop_columns([c for c in added if c in assignment.column_names])
    treated = (
        treated.append_column(SEGMENT, pa.array(segments, pa.string()))
        .append_column(VARIANT, pa.array(drawn.names(), pa.string()))
        .append_column(PROPENSITY, pa.array(drawn.propensity, pa.float64()))
    )
    columns = treated.select([key, SEGMENT, VARIANT, PROPENSITY])
    both = assignment.join(columns, key, join_type="left outer").sort_by("rank")
    manifest = {
        "campaign": spec.id,
        "policy_version": version,
        "policy": spec.policy.model_dump(mode="json"),
        "reward": spec.reward,
        "variants": live,
        "shares": {s: dict(zip(live, v.round(6).tolist(), strict=True)) for s, v in table.items()},
    }
    log.info("campaign %s: %d treated contacts over %d live variants in %d segments, policy %s "
             "(version %s)", spec.id, treated.num_rows, len(live), len(table), spec.policy.kind,
             version)  # fmt: skip
    payloads = {v.id: dict(v.crm) for v in spec.live()}
    return Allocation(treated, both.combine_chunks(), manifest, payloads)


def crm_fields(payloads: Mapping[str, Mapping[str, Any]], row: Mapping[str, Any]) -> dict[str, Any]:
    """What a treated contact's CRM record adds: its variant and the variant's fields."""
    return {VARIANT: row[VARIANT], **payloads[row[VARIANT]]}


# --- the monitor: learning from outcomes, off-policy estimates ---------------------------------


def rewards(outcome: np.ndarray, positive_outcome: str) -> np.ndarray:
    """1 where the outcome moved the good way (a positive outcome when it is good, none when it is
    bad: a churn, a complaint), else 0."""
    hit = np.asarray(outcome, dtype=float) > 0
    return (hit if positive_outcome == "good" else ~hit).astype(float)


def clicked(values: np.ndarray) -> np.ndarray:
    """1 where the contact clicked in the label window, else 0 (no click event: 0)."""
    return (np.nan_to_num(np.asarray(values, dtype=float), nan=0.0) > 0).astype(float)


def run_reward(ctx: StepContext, run_key: str) -> str | None:
    """What the run's variants were drawn to earn (``click`` or ``conversion``, from its campaign
    manifest), or None when the run drew no variants."""
    uri = lake.join(ctx.run_path(layout.CAMPAIGN, run_key), lake.MANIFEST)
    manifest = lake.read_json(uri) if lake.exists(uri) else {}
    if "policy_version" not in manifest:
        return None
    return str(manifest.get("reward", "conversion"))


def logged(
    ctx: StepContext, run_key: str, key: str, outcomes: Any, column: str
) -> tuple[Any, dict] | None:
    """(treated contacts with segment, variant, propensity and the outcome ``column``; the
    assignment's manifest), or None when the run drew no variants."""
    import pyarrow.compute as pc

    uri = ctx.run_path(layout.CAMPAIGN, run_key)
    if not lake.exists(lake.join(uri, lake.MANIFEST)):
        return None
    manifest = lake.read_manifest(uri)
    if "policy_version" not in manifest:
        return None
    table, _ = lake.read_parquet_table(uri, columns=[key, "arm", SEGMENT, VARIANT, PROPENSITY])
    table = table.filter(pc.equal(table["arm"], campaign.TREATED))
    table = table.join(outcomes.select([key, column]), key, join_type="left outer")
    return table.sort_by(key), manifest


def fold(
    ctx: StepContext, name: str, run_key: str, table: Any, reward: np.ndarray
) -> bandit.PolicyState:
    """Fold a run's rewards into the latest state, once (the new state names the version it was
    folded onto). The new version is committed before ``latest`` points at it; a retry finds it
    and folds nothing twice."""
    uri = state_uri(ctx, name, run_key)
    if lake.exists(uri):
        log.info("campaign %s: state %s already learned (a retry): kept", name, run_key)
        return bandit.PolicyState.model_validate(lake.read_json(uri))
    base = latest_version(ctx, name)
    state = read_state(ctx, name, base)
    new = bandit.update(state, table[SEGMENT].to_pylist(), table[VARIANT].to_pylist(), reward,
                        version=run_key)  # fmt: skip
    lake.write_json_atomic(uri, new.model_dump(mode="json"))
    lake.write_json_atomic(ctx.layout.customer.campaign_policy(name, LATEST),
                           {"version": run_key, "based_on": base})  # fmt: skip
    return new


def target_policies(
    manifest: Mapping[str, Any], state: bandit.PolicyState
) -> dict[str, dict[str, np.ndarray]]:
    """What the off-policy table compares: the logging policy, uniform, greedy on the new state."""
    variants = list(manifest["variants"])
    logging_policy = {s: np.array([shares[v] for v in variants], dtype=float)
                      for s, shares in manifest["shares"].items()}  # fmt: skip
    uniform = {s: np.full(len(variants), 1 / len(variants)) for s in logging_policy}
    greedy = {s: bandit.greedy(*state.posterior(s, variants), 0.0) for s in logging_policy}
    return {"logged": logging_policy, "uniform": uniform, "greedy": greedy}


def off_policy(
    table: Any, reward: np.ndarray, manifest: Mapping[str, Any], state: bandit.PolicyState,
    seed: str,
) -> dict[str, dict[str, dict[str, float | None]]]:  # fmt: skip
    """IPS, SNIPS and DR with bootstrap intervals of each target policy's mean reward."""
    variants = list(manifest["variants"])
    index = {v: i for i, v in enumerate(variants)}
    data = ope.Log(
        segments=np.asarray(table[SEGMENT].to_pylist(), dtype=str),
        actions=np.array([index[v] for v in table[VARIANT].to_pylist()], dtype=np.int64),
        rewards=reward,
        propensities=table[PROPENSITY].to_numpy(zero_copy_only=False),
    )
    digest = hashlib.blake2b(f"{seed}\nope".encode(), digest_size=4).digest()
    estimates = ope.evaluate(data, target_policies(manifest, state), len(variants),
                             seed=int.from_bytes(digest, "big"))  # fmt: skip
    return {
        policy: {e: {"value": _round(x.value), "low": _round(x.low), "high": _round(x.high)}
                 for e, x in by.items()}
        for policy, by in estimates.items()
    }  # fmt: skip


def _round(x: float) -> float | None:
    return round(x, 6) if x == x else None  # NaN (no weight) is None in JSON


def regret(table: Any, reward: np.ndarray, state: bandit.PolicyState,
           variants: Sequence[str]) -> dict[str, float]:  # fmt: skip
    """Per segment: contacts x (the best variant's posterior mean - the mean reward realized)."""
    segments = np.asarray(table[SEGMENT].to_pylist(), dtype=str)
    out = {}
    for s in sorted(set(segments.tolist())):
        alpha, beta = state.posterior(s, list(variants))
        here = segments == s
        best = float((alpha / (alpha + beta)).max())
        out[s] = round(float(here.sum() * best - reward[here].sum()), 3)
    return out


def arm_counts(table: Any, reward: np.ndarray) -> dict[str, dict[str, dict[str, int]]]:
    """This run's (successes, trials) per segment and variant: what was folded in."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for s, v, r in zip(table[SEGMENT].to_pylist(), table[VARIANT].to_pylist(), reward, strict=True):
        arm = out.setdefault(s, {}).setdefault(v, {"successes": 0, "trials": 0})
        arm["successes"] += int(r > 0)
        arm["trials"] += 1
    return out


def learn(
    ctx: StepContext, loaded: Any, run_key: str, outcomes: Any, column: str
) -> CampaignFigures | None:
    """The monitor's hook for one scored run whose window closed (``outcomes``: each contact's
    outcome in ``column``: the label's outcome for a ``conversion`` reward, 1 for a click for a
    ``click`` reward, as the run's manifest names it): fold its rewards into the campaign's state
    and estimate the alternatives off-policy. None when the run drew no variants."""
    spec = declared(loaded.platform)
    found = logged(ctx, run_key, loaded.model.key, outcomes, column)
    if spec is None or found is None:
        return None
    table, manifest = found
    if table.num_rows == 0:
        log.info("campaign %s: run %s treated nobody: the state stays as it is",
                 manifest["campaign"], run_key)  # fmt: skip
        return None
    outcome = table[column].to_numpy(zero_copy_only=False)
    kind = manifest.get("reward", "conversion")
    if kind == "click":
        reward = clicked(outcome)
    else:
        reward = rewards(np.nan_to_num(outcome, nan=float(loaded.model.label_fill)),
                         loaded.model.positive_outcome)  # fmt: skip
    state = fold(ctx, manifest["campaign"], run_key, table, reward)
    figures = CampaignFigures(
        campaign=manifest["campaign"],
        reward=kind,
        logged_with=manifest["policy_version"],
        state_version=state.version,
        based_on=state.based_on,
        contacts=int(table.num_rows),
        mean_reward=round(float(reward.mean()), 6),
        counts=arm_counts(table, reward),  # type: ignore[arg-type]  # validated into ArmCount
        shares=manifest.get("shares", {}),
        regret=regret(table, reward, state, manifest["variants"]),
        ope=off_policy(table, reward, manifest, state, run_key),  # type: ignore[arg-type]
    )
    log.info("campaign %s: learned from run %s (%d treated contacts, mean reward %s): state "
             "%s -> %s", figures.campaign, run_key, figures.contacts, figures.mean_reward,
             state.based_on, state.version)  # fmt: skip
    return figures


def note_pending(ctx: StepContext, platform: Any, pending: Sequence[Mapping[str, Any]]) -> None:
    """Say that a run whose outcomes are not in leaves the campaign's state as it is."""
    spec = declared(platform)
    if spec is None:
        return
    version = latest_version(ctx, spec.id)
    for run in pending:
        log.info("campaign %s: state stays at version %s: run %s is pending (%s)",
                 spec.id, version, run["run_key"], run["reason"])  # fmt: skip


def metrics(figures: CampaignFigures | None) -> dict[str, float]:
    """The MLflow metrics of the campaign figures: the mean reward, the regret and every OPE
    estimate."""
    if figures is None:
        return {}
    mean = figures.mean_reward
    out = {"campaign_mean_reward": mean} if mean is not None else {}
    out["campaign_regret"] = round(sum(figures.regret.values()), 3)
    for policy, by in figures.ope.items():
        for estimator, est in by.items():
            for part, value in est.model_dump().items():
                suffix = "" if part == "value" else f"_{part}"
                if value is not None:  # a SNIPS with no weight is left out
                    out[f"ope_{policy}_{estimator}{suffix}"] = value
    return out
