"""Variant allocation and off-policy evaluation, checked against closed forms, scipy and the
campaign simulator (whose true response rates are known). No Spark, no TensorFlow: fast tests."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import integrate, stats

from mlmodels.restaurant_chain.campaign_world import CampaignWorld, play
from mlplatform_contract.campaigns import Campaign
from model_steps import bandit, ope

VARIANTS = ("a", "b", "c", "d")


def _state(counts: dict[str, dict[str, tuple[int, int]]]) -> bandit.PolicyState:
    return bandit.PolicyState.model_validate(
        {
            "campaign": "spring",
            "version": "r1",
            "counts": {
                s: {v: {"successes": w, "trials": n} for v, (w, n) in arms.items()}
                for s, arms in counts.items()
            },
        }
    )


def test_probability_best_matches_numerical_integration():
    # P(X1 > X2) for two Beta posteriors, integrated exactly: integral of pdf1(x) * cdf2(x)
    a1, b1, a2, b2 = 13.0, 90.0, 9.0, 80.0
    exact, _ = integrate.quad(lambda x: stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a2, b2), 0, 1)
    rng = np.random.default_rng(1)
    p = bandit.probability_best(np.array([a1, a2]), np.array([b1, b2]), 200_000, rng)
    assert p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(exact, abs=0.005)  # Monte Carlo error ~0.001


@pytest.mark.parametrize("floor", [0.0, 0.05, 0.2, 0.25])
def test_floor_lifts_starved_variants_and_keeps_the_order(floor):
    raw = np.array([0.9, 0.07, 0.03, 0.0])
    out = bandit.with_floor(raw, floor)
    assert out.sum() == pytest.approx(1.0)
    assert (out >= floor - 1e-12).all()
    assert list(np.argsort(-out, kind="stable")) == list(np.argsort(-raw, kind="stable"))


def test_a_floor_no_allocation_can_meet_is_refused():
    with pytest.raises(ValueError, match="exceeds 1"):
        bandit.with_floor(np.full(4, 0.25), 0.3)


@pytest.mark.parametrize("kind", ["thompson", "epsilon_greedy", "uniform"])
def test_shares_sum_to_one_respect_the_floor_and_repeat_on_a_retry(kind):
    state = _state({"s": {"a": (30, 200), "b": (12, 200), "c": (2, 40), "d": (5, 90)}})
    policy = bandit.Policy(kind=kind, floor=0.05, exploration=0.1, epsilon=0.2)
    first = bandit.shares(state, "s", VARIANTS, policy, "run-7")
    assert first.sum() == pytest.approx(1.0)
    assert (first >= 0.05 - 1e-12).all()
    assert np.array_equal(first, bandit.shares(state, "s", VARIANTS, policy, "run-7"))
    if kind != "uniform":
        assert first.argmax() == 0  # "a" has the highest rate, with evidence


def test_epsilon_greedy_is_exact():
    state = _state({"s": {"a": (5, 100), "b": (20, 100)}})
    policy = bandit.Policy(kind="epsilon_greedy", floor=0.0, exploration=0.0, epsilon=0.2)
    out = bandit.shares(state, "s", ("a", "b"), policy, "r")
    assert out.tolist() == pytest.approx([0.1, 0.9])


def test_assignment_is_deterministic_and_its_propensities_are_the_shares():
    table = {"x": np.array([0.5, 0.3, 0.15, 0.05]), "y": np.array([0.1, 0.1, 0.1, 0.7])}
    keys = [f"d{i}" for i in range(40_000)]
    segments = ["x" if i % 3 else "y" for i in range(40_000)]
    first = bandit.assign(keys, segments, table, VARIANTS, "run-1")
    again = bandit.assign(keys, segments, table, VARIANTS, "run-1")
    other = bandit.assign(keys, segments, table, VARIANTS, "run-2")
    assert np.array_equal(first.index, again.index)  # a retry assigns the same variants
    assert not np.array_equal(first.index, other.index)  # another run draws afresh
    seg = np.array(segments)
    for name, shares in table.items():
        rows = seg == name
        assert np.allclose(first.propensity[rows], shares[first.index[rows]])
        observed = np.bincount(first.index[rows], minlength=4) / rows.sum()
        stderr = np.sqrt(shares * (1 - shares) / rows.sum())
        assert (np.abs(observed - shares) < 4 * stderr).all(), (name, observed, shares)


def test_the_variant_draw_is_independent_of_the_control_arm_draw():
    from model_steps.campaign import held_out

    keys = [f"d{i}" for i in range(20_000)]
    control = np.array(held_out(keys, "run-1", 0.5))
    u = bandit.uniform_draws(keys, "run-1")
    assert abs(np.corrcoef(control, u)[0, 1]) < 0.03


def test_posterior_updates_equal_the_counts_and_keep_retired_variants():
    state = _state({"x": {"old": (4, 10)}})
    rng = np.random.default_rng(3)
    segments = rng.choice(["x", "y"], 500).tolist()
    variants = rng.choice(["a", "b"], 500).tolist()
    rewards = (rng.random(500) < 0.3).astype(float).tolist()
    new = bandit.update(state, segments, variants, rewards, version="r2")
    expected_trials = Counter(zip(segments, variants, strict=True))
    expected_wins = Counter(
        (s, v) for s, v, r in zip(segments, variants, rewards, strict=True) if r > 0
    )
    for (s, v), n in expected_trials.items():
        assert new.arm(s, v) == bandit.ArmCounts(successes=expected_wins[(s, v)], trials=n)
    assert new.arm("x", "old") == bandit.ArmCounts(successes=4, trials=10)  # retired, kept
    assert new.version == "r2"
    # a variant added later starts at the prior, beside the others' evidence
    alpha, beta = new.posterior("x", ["a", "brand-new"])
    assert (alpha[1], beta[1]) == bandit.PRIOR
    # the state is data: a JSON round trip, and a malformed one is refused
    assert bandit.PolicyState.model_validate_json(new.model_dump_json()) == new
    with pytest.raises(ValidationError, match="successes"):
        _state({"x": {"a": (-1, 3)}})


def test_a_retired_variant_gets_no_traffic():
    campaign = Campaign.model_validate(
        {"id": "spring", "variants": [{"id": "a"}, {"id": "b", "retired": True}, {"id": "c"}]}
    )
    live = [v.id for v in campaign.live()]
    state = _state({"s": {"b": (90, 100)}})  # the retired one was the best: still no traffic
    shares = bandit.shares(state, "s", live, bandit.Policy(), "r")
    drawn = bandit.assign([f"k{i}" for i in range(2000)], ["s"] * 2000, {"s": shares}, live, "r")
    assert set(drawn.names()) == {"a", "c"}


@pytest.mark.parametrize(
    ("declaration", "field"),
    [
        ({"id": "c", "variants": []}, "variants"),
        ({"id": "c", "variants": [{"id": "a"}, {"id": "a"}]}, "unique"),
        ({"id": "c", "variants": [{"id": "a", "retired": True}]}, "retired"),
        ({"id": "c", "variants": [{"id": "Bad Id"}]}, "variants.0.id"),
        ({"id": "c", "variants": [{"id": "a", "crm": {"Offer Code": "x"}}]}, "crm field"),
        ({"id": "c", "variants": [{"id": "a", "cost": -1}]}, "variants.0.cost"),
        (
            {"id": "c", "variants": [{"id": f"v{i}"} for i in range(6)], "policy": {"floor": 0.2}},
            "policy.floor",
        ),
        ({"id": "c", "variants": [{"id": "a"}], "policy": {"kind": "greedy"}}, "policy.kind"),
    ],
)
def test_malformed_variant_declarations_are_refused_naming_the_field(declaration, field):
    with pytest.raises(ValidationError) as error:
        Campaign.model_validate(declaration)
    assert field in str(error.value)


def test_thompson_learns_each_segments_best_variant_and_beats_uniform():
    world = CampaignWorld.example(segments=4, variants=4, seed=11)
    thompson = play(world, bandit.Policy(), campaigns=5, contacts=20_000, seed=2)
    uniform = play(world, bandit.Policy(kind="uniform"), campaigns=5, contacts=20_000, seed=2)
    assert sum(p.regret for p in thompson) < 0.6 * sum(p.regret for p in uniform)
    last = thompson[-1].shares
    for s, segment in enumerate(world.segments):
        assert last[segment].argmax() == world.rates[s].argmax(), segment


def test_off_policy_estimates_cover_the_true_value_and_are_unbiased():
    world = CampaignWorld.example(segments=4, variants=4, seed=5)
    policies = {
        "uniform": {s: np.full(4, 0.25) for s in world.segments},
        "greedy": {s: np.eye(4)[world.rates[i].argmax()] for i, s in enumerate(world.segments)},
    }
    truth = {n: ope.true_value(p, world.rate_table(), world.weights()) for n, p in policies.items()}
    logging = bandit.Policy(kind="epsilon_greedy", epsilon=0.6, floor=0.05)
    estimates: dict[str, dict[str, list[float]]] = {
        n: {e: [] for e in ope.ESTIMATORS} for n in truth
    }
    covered = Counter()
    for seed in range(12):
        log = play(world, logging, campaigns=2, contacts=8_000, seed=seed)[-1].log
        result = ope.evaluate(ope.Log(**log), policies, 4, bootstrap=150, seed=seed)
        for name, by_estimator in result.items():
            for est, estimate in by_estimator.items():
                estimates[name][est].append(estimate.value)
                covered[(name, est)] += estimate.covers(truth[name])
    for name, by_estimator in estimates.items():
        for est, values in by_estimator.items():
            mean, spread = np.mean(values), np.std(values, ddof=1) / np.sqrt(len(values))
            assert abs(mean - truth[name]) < 4 * spread + 1e-4, (name, est, mean, truth[name])
            assert covered[(name, est)] >= 9, (name, est, covered[(name, est)])  # of 12, at 95%


def test_a_zero_propensity_is_refused():
    with pytest.raises(ValueError, match="propensity is 0"):
        ope.Log(np.array(["s"]), np.array([0]), np.array([1.0]), np.array([0.0]))
