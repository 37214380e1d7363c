"""Play successive campaigns through the publish and monitor steps' own campaign code, on a lake.

    make campaigns [CAMPAIGNS=8] [CONTACTS=20000]
    .venv-steps/bin/python scripts/play_campaigns.py --campaigns 8 --contacts 20000

Each campaign is one run: publish's code (:func:`model_steps.campaign.split` for the control arm,
:func:`model_steps.campaign_loop.allocate` for the variants, the assignment committed to the lake
with its propensities and policy version), then the simulator answers every treated contact at the
true rate of its (segment, variant) (``mlmodels.restaurant_chain.campaign_world``, 8 segments x 6
variants, one clearly best variant per segment), then the monitor's code
(:func:`model_steps.campaign_loop.learn`) folds the rewards into the next posterior state and
estimates the alternatives off-policy. Prints, per campaign, the share each segment's best variant
got and the regret against the oracle, then the cumulative regret against uniform allocation, and
the last campaign's off-policy table next to the true values. A few seconds; no Spark, no CRM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from mlmodels.restaurant_chain.campaign_world import CampaignWorld
from mlplatform_contract.campaigns import Campaign
from model_steps import campaign, campaign_loop, lake, ope
from model_steps.contract import StepContext

KEY = "contact"


def declaration(world: CampaignWorld, reward: str = "conversion") -> Campaign:
    variants = [{"id": v, "crm": {"offer": v.upper()}} for v in world.variants]
    return Campaign.model_validate({"id": "simulated", "segment_column": "segment",
                                    "variants": variants, "reward": reward,
                                    "policy": {"kind": "thompson", "floor": 0.02,
                                               "exploration": 0.05}})  # fmt: skip


def one_run(lake_uri: str, world: CampaignWorld, spec: Campaign, c: int, n: int) -> dict:
    """Publish's allocation, the simulator's answers, the monitor's learning: one campaign."""
    rng = np.random.default_rng([7, c])
    ctx = StepContext(step="publish", pipeline="simulated", customer="demo",
                      run_id=f"manual__campaign-{c:03d}", data_date=dt.date(2026, 1, 1),
                      env={"LAKE_URI": lake_uri})  # fmt: skip
    keys, segment = world.contacts(n, c, rng)
    chosen = pa.table({KEY: keys, "score": rng.random(n), "model_version": ["1"] * n,
                       "segment": np.asarray(world.segments)[segment]})  # fmt: skip
    identity = f"{ctx.pipeline}/{ctx.customer}/{ctx.run_key}"
    treated, assignment = campaign.split(chosen, KEY, identity, 0.1)
    drawn = campaign_loop.allocate(ctx, spec, treated, assignment, KEY, identity)
    lake.commit_parquet_table(ctx.layout.campaign, [drawn.assignment], drawn.manifest)
    seg = np.array([world.segments.index(s) for s in drawn.treated["segment"].to_pylist()])
    act = np.array([world.variants.index(v) for v in drawn.treated["variant"].to_pylist()])
    answers = world.respond(seg, act, rng, spec.reward)  # converted, or clicked
    observed = pa.table({KEY: drawn.treated[KEY], "outcome": answers})
    rates = world.true_rates(spec.reward)
    loaded = SimpleNamespace(platform=SimpleNamespace(crm=SimpleNamespace(campaign=spec)),
                             model=SimpleNamespace(key=KEY, label_fill=0,
                                                   positive_outcome="good"))  # fmt: skip
    figures = campaign_loop.learn(ctx, loaded, ctx.run_key, observed, "outcome")
    state = campaign_loop.read_state(ctx, spec.id, ctx.run_key)
    best = rates.argmax(axis=1)
    shares = drawn.manifest["shares"]
    return {
        "best_share": float(np.mean([shares[s][world.variants[best[i]]]
                                     for i, s in enumerate(world.segments) if s in shares])),
        "reward": float(rates[seg, act].sum()),
        "oracle": float(rates[seg].max(axis=1).sum()),
        "uniform": float(rates[seg].mean(axis=1).sum()),
        "figures": figures.model_dump() if figures else {"ope": {}},
        "weights": ope.segment_weights(drawn.treated["segment"].to_pylist()),
        "targets": campaign_loop.target_policies(drawn.manifest, state),
    }  # fmt: skip


def true_values(world: CampaignWorld, last: dict, reward: str) -> dict[str, float]:
    """The exact mean reward of the off-policy table's target policies on the last campaign's
    contacts (the simulator knows the true rates)."""
    rates, weights = world.rate_table(reward), last["weights"]
    return {
        name: ope.true_value(policy, rates, weights) for name, policy in last["targets"].items()
    }


def _interval(x: dict[str, float | None]) -> str:
    if x["value"] is None or x["low"] is None or x["high"] is None:
        return "n/a (no weight)"
    return f"{x['value']:.4f} [{x['low']:.4f}, {x['high']:.4f}]"


def report(world: CampaignWorld, runs: list[dict], reward: str) -> None:
    print(f"{'campaign':>8}{'best variant share':>20}{'regret':>10}{'uniform regret':>16}")
    for c, r in enumerate(runs, 1):
        print(f"{c:>8}{r['best_share']:>20.2f}{r['oracle'] - r['reward']:>10.1f}"
              f"{r['oracle'] - r['uniform']:>16.1f}")  # fmt: skip
    regret = sum(r["oracle"] - r["reward"] for r in runs)
    uniform = sum(r["oracle"] - r["uniform"] for r in runs)
    print(f"\ncumulative regret vs the oracle: bandit {regret:.1f}, uniform {uniform:.1f} "
          f"(bandit / uniform = {regret / uniform:.2f}); oracle reward "
          f"{sum(r['oracle'] for r in runs):.1f}")  # fmt: skip
    last, truth = runs[-1], true_values(world, runs[-1], reward)
    print("\noff-policy estimates of the last campaign's mean reward (value [95% interval])")
    print(f"{'target policy':<14}{'true':>9}" + "".join(f"{e:>28}" for e in ope.ESTIMATORS))
    for name, by in last["figures"]["ope"].items():
        cells = "".join(f"{_interval(x):>28}" for x in by.values())
        print(f"{name:<14}{truth[name]:>9.4f}{cells}")
    print("(logged: the policy that sent; greedy: each segment's best posterior mean after it)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=8)
    parser.add_argument("--contacts", type=int, default=20_000, help="selected per campaign")
    parser.add_argument("--lake", help="lake URI to keep (default: a temporary folder)")
    parser.add_argument(
        "--reward",
        choices=("conversion", "click"),
        default="conversion",
        help="the campaign's crm.campaign.reward: what teaches the bandit",
    )
    args = parser.parse_args()
    world = CampaignWorld.example(segments=8, variants=6, seed=7)
    spec = declaration(world, args.reward)
    with tempfile.TemporaryDirectory() as tmp:
        lake_uri = args.lake or f"file://{tmp}/lake"
        runs = [one_run(lake_uri, world, spec, c, args.contacts) for c in range(args.campaigns)]
        print(f"{args.campaigns} campaigns x {args.contacts:,} selected contacts (10% held out), "
              f"8 segments x 6 variants, reward {args.reward}; posterior states in "
              f"{lake_uri}/campaign/")  # fmt: skip
        report(world, runs, args.reward)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
