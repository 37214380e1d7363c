"""Campaign experiments wired into the steps (model_steps.campaign_loop): publish draws each treated
contact's variant and commits it with its propensity before the first batch; the monitor folds the
rewards into the policy state the next publish reads and estimates the alternatives off-policy.

Unit-level (a tmp lake, no Spark) except one publish through its CLI against the local CRM receiver.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from publish_helpers import PIPELINE, TENANT, Receiver, publish_env, run_publish, write_scores

from mlplatform_contract.campaigns import Campaign
from model_steps import bandit, campaign, campaign_loop, lake
from model_steps.contract import StepContext, StepError, UsageError

pytestmark = pytest.mark.timeout(120)

DECLARED = {
    "id": "spring",
    "segment_column": "segment",
    "variants": [
        {"id": "pct10", "crm": {"offer": "SPRING10", "template": "warm"}},
        {"id": "pct20", "crm": {"offer": "SPRING20"}, "cost": 0.4},
        {"id": "dessert", "crm": {"offer": "DESSERT"}},
        {"id": "old", "crm": {"offer": "OLD"}, "retired": True},
    ],
    "policy": {"kind": "thompson", "floor": 0.05, "exploration": 0.1},
}


def context(lake_uri: str, run_key: str = "r1") -> StepContext:
    return StepContext(step="publish", pipeline=PIPELINE, customer=TENANT,
                       run_id=f"manual__{run_key}", data_date=dt.date(2026, 6, 29),
                       env={"LAKE_URI": lake_uri})  # fmt: skip


def write_population(ctx: StepContext, n: int) -> dict[str, str]:
    segments = {f"d{i:05d}": ("north", "south", "west")[i % 3] for i in range(n)}
    table = pa.table({"diner_id": list(segments), "segment": list(segments.values())})
    lake.commit_parquet_table(ctx.layout.population, [table], {"table": "population"})
    return segments


def selection(n: int) -> pa.Table:
    return pa.table({"diner_id": [f"d{i:05d}" for i in range(n)],
                     "score": [1 - i / n for i in range(n)],
                     "model_version": ["3"] * n})  # fmt: skip


def allocate(ctx: StepContext, spec: Campaign, n: int = 3000) -> campaign_loop.Allocation:
    identity = f"{ctx.pipeline}/{ctx.customer}/{ctx.run_key}"
    treated, assignment = campaign.split(selection(n), "diner_id", identity, 0.1)
    return campaign_loop.allocate(ctx, spec, treated, assignment, "diner_id", identity)


def test_propensities_are_the_segments_shares_and_a_retired_variant_gets_no_traffic(tmp_path):
    ctx = context(f"file://{tmp_path}/lake")
    segments = write_population(ctx, 3000)
    drawn = allocate(ctx, Campaign.model_validate(DECLARED))
    rows = drawn.treated.to_pylist()
    shares = drawn.manifest["shares"]
    assert set(shares) == {"north", "south", "west"} and drawn.manifest["policy_version"] == "prior"
    assert drawn.manifest["variants"] == ["pct10", "pct20", "dessert"]  # live ones only
    for by_variant in shares.values():
        assert sum(by_variant.values()) == pytest.approx(1.0, abs=1e-5)
        assert min(by_variant.values()) >= 0.05 - 1e-6  # the floor
    for row in rows:
        assert row["segment"] == segments[row["diner_id"]]  # read from the run's population
        assert row["propensity"] == pytest.approx(shares[row["segment"]][row["variant"]], abs=1e-6)
    assert {r["variant"] for r in rows} == {"pct10", "pct20", "dessert"}  # "old" never drawn
    control = [r for r in drawn.assignment.to_pylist() if r["arm"] == campaign.CONTROL]
    assert control and all(r["variant"] is None and r["propensity"] is None for r in control)
    assert drawn.assignment["rank"].to_pylist() == sorted(drawn.assignment["rank"].to_pylist())
    record = campaign_loop.crm_fields(drawn.payloads, rows[0])
    assert record == {"variant": rows[0]["variant"], **DECLARED_PAYLOADS[rows[0]["variant"]]}


DECLARED_PAYLOADS = {v["id"]: v["crm"] for v in DECLARED["variants"]}


def test_a_segment_column_found_nowhere_is_refused_naming_the_setting(tmp_path):
    ctx = context(f"file://{tmp_path}/lake")
    write_population(ctx, 50)
    spec = Campaign.model_validate({**DECLARED, "segment_column": "tier"})
    with pytest.raises(StepError, match=r"crm.campaign.segment_column 'tier'"):
        allocate(ctx, spec, n=50)


def loaded(spec: Campaign, positive_outcome: str = "good") -> SimpleNamespace:
    model = SimpleNamespace(key="diner_id", label_fill=0, positive_outcome=positive_outcome)
    return SimpleNamespace(platform=SimpleNamespace(crm=SimpleNamespace(campaign=spec)),
                           model=model)  # fmt: skip


def commit_assignment(ctx: StepContext, drawn: campaign_loop.Allocation) -> None:
    lake.commit_parquet_table(ctx.layout.campaign, [drawn.assignment], drawn.manifest)


def outcomes(keys: list[str], seed: int = 3) -> pa.Table:
    hit = np.random.default_rng(seed).random(len(keys)) < 0.3
    return pa.table({"diner_id": keys, "outcome": hit.astype(float)})


def test_posterior_updates_equal_the_counts_once_and_the_next_publish_reads_them(tmp_path):
    lake_uri, spec = f"file://{tmp_path}/lake", Campaign.model_validate(DECLARED)
    ctx = context(lake_uri, "r1")
    write_population(ctx, 3000)
    drawn = allocate(ctx, spec)
    commit_assignment(ctx, drawn)
    observed = outcomes(selection(3000)["diner_id"].to_pylist())
    learned = campaign_loop.learn(ctx, loaded(spec), ctx.run_key, observed, "outcome")
    assert learned is not None
    figures = learned.model_dump(mode="json")
    hit = dict(zip(observed["diner_id"].to_pylist(), observed["outcome"].to_pylist(), strict=True))
    expected: dict = {}
    for row in drawn.treated.to_pylist():
        arm = expected.setdefault(row["segment"], {}).setdefault(row["variant"], [0, 0])
        arm[0] += int(hit[row["diner_id"]] > 0)
        arm[1] += 1
    state = campaign_loop.read_state(ctx, "spring", ctx.run_key)
    got = {
        s: {v: [a.successes, a.trials] for v, a in arms.items()} for s, arms in state.counts.items()
    }
    assert got == expected
    assert figures["counts"] == {s: {v: {"successes": w, "trials": n} for v, (w, n) in arms.items()}
                                 for s, arms in expected.items()}  # fmt: skip
    assert figures["state_version"] == ctx.run_key and figures["based_on"] == "prior"
    assert campaign_loop.latest_version(ctx, "spring") == ctx.run_key
    assert set(figures["ope"]) == {"logged", "uniform", "greedy"}
    for estimates in figures["ope"].values():
        for e in estimates.values():
            assert e["low"] <= e["value"] <= e["high"]
    assert figures["shares"] == drawn.manifest["shares"]  # the allocation by segment it ran with
    for segment, arms in expected.items():  # regret against the variant now known best
        alpha, beta = state.posterior(segment, list(drawn.manifest["variants"]))
        lost = sum(n for _, n in arms.values()) * max(alpha / (alpha + beta))
        assert figures["regret"][segment] == pytest.approx(lost - sum(w for w, _ in arms.values()),
                                                           abs=1e-3)  # fmt: skip
    metrics = campaign_loop.metrics(learned)
    assert "ope_uniform_dr" in metrics and "ope_logged_ips_low" in metrics
    assert metrics["campaign_regret"] == pytest.approx(sum(figures["regret"].values()), abs=1e-2)
    # a retry of the monitor folds nothing twice
    again = campaign_loop.learn(ctx, loaded(spec), ctx.run_key, observed, "outcome")
    assert (
        campaign_loop.read_state(ctx, "spring", ctx.run_key) == state
        and again is not None
        and again.model_dump(mode="json")["counts"] == figures["counts"]
    )
    # the next run's publish allocates from the learned state
    write_population(ctx2 := context(lake_uri, "r2"), 3000)
    nxt = allocate(ctx2, spec)
    assert nxt.manifest["policy_version"] == ctx.run_key


def test_a_bad_outcome_is_rewarded_when_it_does_not_happen():
    outcome = np.array([0.0, 1.0, 2.0, 0.0])
    assert campaign_loop.rewards(outcome, "good").tolist() == [0, 1, 1, 0]
    assert campaign_loop.rewards(outcome, "bad").tolist() == [1, 0, 0, 1]


def test_retired_and_added_variants_keep_the_others_state(tmp_path):
    lake_uri = f"file://{tmp_path}/lake"
    spec = Campaign.model_validate(DECLARED)
    ctx = context(lake_uri, "r1")
    write_population(ctx, 600)
    commit_assignment(ctx, drawn := allocate(ctx, spec, n=600))
    campaign_loop.learn(
        ctx, loaded(spec), ctx.run_key, outcomes(selection(600)["diner_id"].to_pylist()), "outcome"
    )
    learned = campaign_loop.read_state(ctx, "spring", ctx.run_key)
    variants = [
        {**v, "retired": True} if v["id"] == "pct20" else v for v in DECLARED["variants"]
    ] + [{"id": "brunch", "crm": {"offer": "BRUNCH"}}]
    changed = Campaign.model_validate({**DECLARED, "variants": variants})
    ctx2 = context(lake_uri, "r2")
    write_population(ctx2, 600)
    nxt = allocate(ctx2, changed, n=600)
    assert nxt.manifest["variants"] == ["pct10", "dessert", "brunch"]
    assert "pct20" not in set(nxt.treated["variant"].to_pylist())
    commit_assignment(ctx2, nxt)
    campaign_loop.learn(
        ctx2,
        loaded(changed),
        ctx2.run_key,
        outcomes(selection(600)["diner_id"].to_pylist()),
        "outcome",
    )
    after = campaign_loop.read_state(ctx2, "spring", ctx2.run_key)
    for segment in learned.counts:  # the retired variant's evidence is kept as it was
        assert after.arm(segment, "pct20") == learned.arm(segment, "pct20")
        assert after.arm(segment, "pct10").trials > learned.arm(segment, "pct10").trials
        assert after.arm(segment, "brunch").trials > 0
    assert drawn.manifest["policy_version"] == "prior"


@pytest.mark.parametrize("reward", ["conversion", "click"])
def test_missing_outcomes_leave_the_state_as_it_is_and_say_so(tmp_path, caplog, reward):
    """A late or missing drop (of conversions or of clicks: the window's event drops) keeps the
    run pending in the monitor (steps/monitor.plan); the state stays, and the log says so."""
    lake_uri = f"file://{tmp_path}/lake"
    spec = Campaign.model_validate({**DECLARED, "reward": reward})
    ctx = context(lake_uri, "r1")
    write_population(ctx, 300)
    commit_assignment(ctx, allocate(ctx, spec, n=300))
    campaign_loop.learn(
        ctx, loaded(spec), ctx.run_key, outcomes(selection(300)["diner_id"].to_pylist()), "outcome"
    )
    before = campaign_loop.read_state(ctx, "spring", ctx.run_key)
    pending = [{"run_key": "r2", "reason": "outcome drops not landed yet: email_events"}]
    with caplog.at_level(logging.INFO, logger="model_steps.campaign_loop"):
        campaign_loop.note_pending(ctx, loaded(spec).platform, pending)
    said = f"state stays at version {ctx.run_key}: run r2 is pending (outcome drops not landed"
    assert said in caplog.text
    assert campaign_loop.latest_version(ctx, "spring") == ctx.run_key
    assert campaign_loop.read_state(ctx, "spring", ctx.run_key) == before
    # a run that drew no variants (no campaign declared then) teaches nothing
    assert (
        campaign_loop.learn(context(lake_uri, "r9"), loaded(spec), "r9", pa.table({}), "x") is None
    )


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    r = Receiver(tmp_path_factory.mktemp("crm") / "crm.sqlite")
    yield r
    r.stop()


def test_a_retry_after_the_state_moved_assigns_the_same_variants_and_sends_once(receiver, tmp_path):
    """The checkpoint of acknowledged batches is lost (the step was killed before saving it) and
    the monitor learned in between: the retry still draws from the pinned policy version, so its
    batches are byte-identical and the CRM answers them from its idempotency store."""
    receiver.reset()
    lake_uri, run_id = f"file://{tmp_path}/lake", "manual__variants"
    write_scores(lake_uri, run_id, n=1000)
    declared = {**DECLARED, "segment_column": None}
    cfg = {"batch_size": 40, "top_fraction": 0.5, "campaign": declared}
    env = publish_env(lake_uri, receiver.url, tmp_path / "xcom.json", cfg)
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    first, manifest = lake.read_parquet_table(result["campaign_uri"])
    assert manifest["policy_version"] == "prior" and manifest["campaign"] == "spring"
    records = {r["contact_id"]: r for r in receiver.contacts()}
    treated = {r["diner_id"]: r["variant"] for r in first.to_pylist() if r["arm"] == "treated"}
    assert {c: r["variant"] for c, r in records.items()} == treated
    for record in records.values():  # the variant's CRM fields travel with the record
        assert record["offer"] == DECLARED_PAYLOADS[record["variant"]]["offer"]

    ctx = context(lake_uri, result["campaign_uri"].split("run=")[1].strip("/"))
    skewed = bandit.PolicyState(campaign="spring", version="later",
                                counts={"all": {"dessert": {"successes": 900, "trials": 1000}}})  # fmt: skip
    lake.write_json_atomic(campaign_loop.state_uri(ctx, "spring", "later"), skewed.model_dump())
    lake.write_json_atomic(ctx.layout.customer.campaign_policy("spring", "latest.json"),
                           {"version": "later"})  # fmt: skip
    Path(result["checkpoint_uri"].removeprefix("file://")).unlink()
    code, out, again = run_publish(env, run_id)
    assert code == 0, out
    second, manifest = lake.read_parquet_table(result["campaign_uri"])
    assert manifest["policy_version"] == "prior" and second.to_pylist() == first.to_pylist()
    assert (
        again["sent_batches"] == result["batches"]
        and again["replayed_batches"] == result["batches"]
    )
    stats = receiver.stats()
    assert stats["duplicate_writes"] == 0 and stats["max_writes_per_contact"] == 1, stats


def test_the_example_diners_answer_each_variant_at_its_true_lift():
    """The example generator's outcomes follow campaign_world's rates: every diner treated with
    its segment's best variant converts far more often than with its worst one."""
    from mlmodels.restaurant_chain import datagen, tables
    from mlmodels.restaurant_chain.campaign_world import variant_lifts

    n, variants = 6000, ("a", "b", "c", "d")
    diners = datagen.generate(n, seed=5)["diners"]
    segment = dict(zip(diners["diner_id"], diners["segment"], strict=True))
    lifts = variant_lifts(tables.SEGMENTS, variants)

    def converted(pick) -> int:
        chosen = {d: pick(lambda v, s=s: lifts[(s, v)]) for d, s in segment.items()}
        tables_ = datagen.generate_outcomes(n, days=28, seed=5, offer_treated=list(segment),
                                            offer_variants=chosen, variants=variants)  # fmt: skip
        events = tables_["email_events"]
        return events[events["event_type"] == "conversion"]["diner_id"].nunique()

    best = converted(lambda key: max(variants, key=key))
    worst = converted(lambda key: min(variants, key=key))
    assert best > 1.5 * worst > 0


def test_an_empty_selection_draws_nothing_and_teaches_nothing(tmp_path):
    ctx = context(f"file://{tmp_path}/lake")
    write_population(ctx, 10)
    empty = selection(1).slice(0, 0)
    identity = f"{ctx.pipeline}/{ctx.customer}/{ctx.run_key}"
    treated, assignment = campaign.split(empty, "diner_id", identity, 0.1)
    spec = Campaign.model_validate(DECLARED)
    drawn = campaign_loop.allocate(ctx, spec, treated, assignment, "diner_id", identity)
    assert drawn.treated.num_rows == 0 and drawn.manifest["shares"] == {}
    commit_assignment(ctx, drawn)
    nobody = empty.select(["diner_id"]).append_column("outcome", pa.array([], pa.float64()))
    assert campaign_loop.learn(ctx, loaded(spec), ctx.run_key, nobody, "outcome") is None
    assert campaign_loop.latest_version(ctx, "spring") == "prior"


def test_a_click_reward_counts_the_clicks_of_the_sent_contacts_only(tmp_path):
    """reward: click: the posterior counts each treated contact's click, whatever its conversion
    (the label's outcome, which the uplift keeps); clicks of held-out or unselected contacts
    teach nothing."""
    lake_uri = f"file://{tmp_path}/lake"
    spec = Campaign.model_validate({**DECLARED, "reward": "click"})
    ctx = context(lake_uri, "r1")
    write_population(ctx, 3000)
    drawn = allocate(ctx, spec)
    commit_assignment(ctx, drawn)
    assert campaign_loop.run_reward(ctx, ctx.run_key) == "click"
    keys = [*selection(3000)["diner_id"].to_pylist(), "x-never-sent"]
    rng = np.random.default_rng(5)
    clicked = (rng.random(len(keys)) < 0.4).astype(float)
    converted = (rng.random(len(keys)) < 0.1).astype(float)  # not what a click campaign learns
    clicked[-1] = 1.0
    observed = pa.table({"diner_id": keys, "outcome": converted, "clicked": clicked})
    learned = campaign_loop.learn(ctx, loaded(spec), ctx.run_key, observed, "clicked")
    assert learned is not None and learned.reward == "click"
    click = dict(zip(keys, clicked.tolist(), strict=True))
    expected: dict = {}
    for row in drawn.treated.to_pylist():
        arm = expected.setdefault(row["segment"], {}).setdefault(row["variant"], [0, 0])
        arm[0] += int(click[row["diner_id"]])
        arm[1] += 1
    state = campaign_loop.read_state(ctx, "spring", ctx.run_key)
    got = {s: {v: [a.successes, a.trials] for v, a in arms.items()}
           for s, arms in state.counts.items()}  # fmt: skip
    assert got == expected  # the posterior equals the click counts of the treated contacts
    treated = set(drawn.treated["diner_id"].to_pylist())
    assert sum(n for arms in expected.values() for _, n in arms.values()) == len(treated)
    assert sum(w for arms in expected.values() for w, _ in arms.values()) == sum(
        int(click[k]) for k in treated
    )
    assert learned.mean_reward == pytest.approx(np.mean([click[k] for k in treated]), abs=1e-6)
    ips = learned.ope["logged"]["ips"].value  # the logging policy's IPS: the realized click rate
    assert ips == pytest.approx(learned.mean_reward, abs=1e-5)


def test_a_conversion_campaign_ignores_the_clicks():
    """The default reward is unchanged: the label's outcome, per the model's direction."""
    assert Campaign.model_validate(DECLARED).reward == "conversion"
    assert campaign_loop.clicked(np.array([np.nan, 0.0, 1.0, 3.0])).tolist() == [0, 0, 1, 1]


def test_a_click_reward_without_a_clicks_hook_is_refused_at_step_start_naming_the_setting():
    from model_steps.model_loader import ModelRef, check_reward, parse_platform_settings

    ref = ModelRef("mlmodels.no_clicks", source="dags/no_clicks.py")
    platform = parse_platform_settings({"crm": {"campaign": {**DECLARED, "reward": "click"}}})
    with pytest.raises(UsageError, match=r"dags/no_clicks.py: settings crm.campaign.reward"):
        check_reward(SimpleNamespace(name="no_clicks", clicks=None), platform, ref)  # type: ignore[arg-type]
    check_reward(SimpleNamespace(name="m", clicks=len), platform, ref)  # type: ignore[arg-type]
    conversion = parse_platform_settings({"crm": {"campaign": DECLARED}})
    check_reward(SimpleNamespace(name="no_clicks", clicks=None), conversion, ref)  # type: ignore[arg-type]


def test_the_example_diners_click_each_variant_at_its_true_click_lift():
    """The example generator's clicks follow campaign_world's click lifts: diners sent their
    segment's best variant for clicks click far more often than with its worst one."""
    from mlmodels.restaurant_chain import datagen, tables
    from mlmodels.restaurant_chain.campaign_world import variant_lifts

    n, variants = 6000, ("a", "b", "c", "d")
    diners = datagen.generate(n, seed=5)["diners"]
    segment = dict(zip(diners["diner_id"], diners["segment"], strict=True))
    lifts = variant_lifts(tables.SEGMENTS, variants, reward="click")

    def events(pick) -> dict[str, int]:
        chosen = {d: pick(lambda v, s=s: lifts[(s, v)]) for d, s in segment.items()}
        tables_ = datagen.generate_outcomes(n, days=28, seed=5, offer_treated=list(segment),
                                            offer_variants=chosen, variants=variants)  # fmt: skip
        e = tables_["email_events"]
        return {t: e[e["event_type"] == t]["diner_id"].nunique() for t in ("click", "conversion")}

    best = events(lambda key: max(variants, key=key))
    worst = events(lambda key: min(variants, key=key))
    # every converter clicked; those who clicked without converting follow the click lifts
    assert best["click"] - best["conversion"] > 1.5 * (worst["click"] - worst["conversion"]) > 0
    assert best["click"] > 1.2 * worst["click"]
    assert lifts != variant_lifts(tables.SEGMENTS, variants)  # other best variants than conversions
