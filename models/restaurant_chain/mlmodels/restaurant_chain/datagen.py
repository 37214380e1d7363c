"""Synthetic example data: a restaurant chain's diners, orders and email campaign events.

Deterministic by seed. Writes the raw zone the way the chain's systems would drop it (see
:mod:`mlmodels.restaurant_chain.tables`): a CRM diner export (initial backfill + daily deltas, CSV), daily POS
order CSVs and the email provider's daily JSON-lines event export.

The signal is real and learnable: each diner has a hidden ordering rate, spend level, engagement
level, channel of their own (most of their orders go through it) and maybe a churn date. Orders
and email opens/clicks are drawn from those, and the chance to convert on a campaign email grows
with recent activity (recency, frequency), spend (monetary) and engagement. Features computed from
the observed history therefore predict conversion (and the next orders' channel) well above chance.

The last campaign goes to every diner the day after ``cutoff``; the window after it carries the
label. ``_datagen.json`` next to the tables records the parameters and the data date to run with.

    python -m mlmodels.restaurant_chain.datagen --customer acme-foods --lake file:///tmp/lake --size small
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlmodels.restaurant_chain import tables as source
from mlmodels.restaurant_chain.campaign_world import variant_lifts
from model_steps import lake, raw_schema

# diners per size; orders ~ 5 per diner in the year before the cutoff
SIZES: dict[str, int] = {
    "tiny": 600,  # unit/bad-input tests
    "small": 4_000,  # make run, integration test
    "medium": 20_000,  # ~100k order rows
    "large": 200_000,  # ~1M order rows
    "xl": 1_000_000,  # ~5M order rows, >= 1M diners
}
DEFAULT_CUTOFF = dt.date(2026, 6, 15)  # the training table's cutoff the signal is built around
DEFAULT_HISTORY_DAYS = 420
LABEL_WINDOW_DAYS = 14
# the last drop day, a label window after the cutoff: the data date to run the pipeline with
DEFAULT_DATA_DATE = DEFAULT_CUTOFF + dt.timedelta(days=LABEL_WINDOW_DAYS)
CAMPAIGN_EVERY_DAYS = 28
CAMPAIGN_REACH = 0.25  # share of diners each regular campaign goes to
# What the platform's CRM pushes do to the diners who receive them (the outcome window only): the
# propensity offer adds to the conversion logit of the newsletter after the data date, a VIP
# record makes a diner order more often. Held-out (control) diners get neither.
OFFER_EFFECT_LOGIT = 0.8
VIP_ORDER_RATE_BOOST = 1.25
# which of the example models' campaigns is which treatment (--campaigns reads their arms)
TREATMENTS = {"customer_propensity": "offer_treated", "next_spend": "vip_treated"}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _hidden_state(rng: np.random.Generator, n: int, start: Any, end: Any) -> dict[str, Any]:
    """Who the diners are and how they behave (never written out): the first draws of a seed, so
    :func:`generate` and :func:`generate_outcomes` rebuild the same world from the same seed."""
    day = np.timedelta64(1, "D")
    # 65% signed up before the export started (backfill), the rest during it
    before = rng.random(n) < 0.65
    signup = np.where(
        before,
        start - rng.integers(1, 3 * 365, n) * day,
        start + rng.integers(0, int((end - start) / day) + 1, n) * day,
    ).astype("datetime64[D]")
    segment_idx = rng.choice(len(source.SEGMENTS), n, p=[0.25, 0.15, 0.3, 0.1, 0.2])
    region_idx = rng.choice(len(source.REGIONS), n, p=[0.2, 0.2, 0.2, 0.15, 0.25])
    seg_rate = np.array([1.2, 0.9, 1.1, 0.8, 0.5])[segment_idx]
    rate = np.exp(rng.normal(np.log(0.42), 0.8, n)) * seg_rate  # orders per 30 days
    spend = (
        np.exp(rng.normal(np.log(24.0), 0.35, n)) * np.array([1.5, 0.7, 1.1, 1.0, 0.9])[segment_idx]
    )
    engagement = rng.beta(2.0, 4.0, n)
    loyalty = (rng.random(n) < 0.2 + 0.5 * engagement).astype(int)
    churns = rng.random(n) < 0.35
    churn_at = (start + rng.integers(0, int((end - start) / day), n) * day).astype("datetime64[D]")
    churn_at = np.where(churns, churn_at, end + day)  # end + 1 day: still active at the end
    diner_ids = np.char.add("D", np.char.zfill(np.arange(1, n + 1).astype(str), 8))
    return {
        "signup": signup, "segment_idx": segment_idx, "region_idx": region_idx, "rate": rate,
        "spend": spend, "engagement": engagement, "loyalty": loyalty, "churn_at": churn_at,
        "diner_ids": diner_ids, "channel_mix": _channel_mix(segment_idx),
    }  # fmt: skip


CHANNEL_P = np.array(
    [
        [0.45, 0.2, 0.2, 0.15],
        [0.2, 0.3, 0.2, 0.3],
        [0.3, 0.25, 0.3, 0.15],
        [0.7, 0.2, 0.08, 0.02],
        [0.4, 0.3, 0.2, 0.1],
    ]
)


# The share of a diner's orders placed through their own channel; the rest follow their segment's
# mix. Each diner's own channel is drawn from that mix too, by a generator of its own (CHANNEL_SEED),
# so the seed's other draws, and every other column of the data, stay as they were before diners
# had a channel of their own: the signal preferred_channel learns (history predicts the channel).
OWN_CHANNEL_SHARE = 0.6
CHANNEL_SEED = 20261204


def _channel_mix(segment_idx: np.ndarray) -> np.ndarray:
    """(n, channels): each diner's chance to order through each channel."""
    segment_mix, k = CHANNEL_P[segment_idx], CHANNEL_P.shape[1]
    u = np.random.default_rng(CHANNEL_SEED).random(len(segment_idx))
    own = np.minimum((u[:, None] > np.cumsum(segment_mix, axis=1)).sum(axis=1), k - 1)
    return (1 - OWN_CHANNEL_SHARE) * segment_mix + OWN_CHANNEL_SHARE * np.eye(k)[own]


def _orders(
    rng: np.random.Generator,
    h: dict[str, Any],
    active_from: Any,
    active_to: Any,
    rate: np.ndarray,
    first_id: int = 1,
) -> pd.DataFrame:
    """Poisson orders over each diner's active span ``[active_from, active_to)``, uniform times."""
    day = np.timedelta64(1, "D")
    span_days = np.maximum((active_to - active_from) / day, 0).astype(float)
    counts = rng.poisson(rate * span_days / 30.0)
    idx = np.repeat(np.arange(len(rate)), counts)
    m = idx.size
    offs = rng.random(m) * span_days[idx] * 86400.0
    order_ts = active_from[idx].astype("datetime64[s]") + offs.astype("int64").astype(
        "timedelta64[s]"
    )
    amount = np.round(h["spend"][idx] * np.exp(rng.normal(0, 0.3, m)), 2)
    u = rng.random(m)
    channel_idx = (u[:, None] > np.cumsum(h["channel_mix"][idx], axis=1)).sum(axis=1)
    channel_idx = np.minimum(channel_idx, len(source.CHANNELS) - 1)
    store = h["region_idx"][idx] * 10 + rng.integers(0, 10, m)
    ids = np.arange(first_id, first_id + m).astype(str)
    orders = pd.DataFrame(
        {
            "order_id": np.char.add("O", np.char.zfill(ids, 10)),
            "diner_id": h["diner_ids"][idx],
            "order_ts": order_ts,
            "amount": amount,
            "channel": np.array(source.CHANNELS)[channel_idx],
            "store_id": np.char.add("S", np.char.zfill(store.astype(str), 3)),
        }
    ).sort_values("order_ts", kind="stable")
    orders["dt"] = orders["order_ts"].values.astype("datetime64[D]")
    return orders


def _conversion_logit(h: dict[str, Any], who: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """How likely a campaign email converts: recent activity, spend and engagement."""
    recent = np.log(h["rate"][who] / 0.42) * alive - 2.2 * (~alive)
    return (
        -3.1
        + 0.9 * recent
        + 0.55 * np.log(h["spend"][who] / 24.0) / 0.35
        + 3.0 * (h["engagement"][who] - 0.33)
        + 0.3 * h["loyalty"][who]
    )


def generate(
    n_diners: int,
    *,
    seed: int = 7,
    cutoff: dt.date = DEFAULT_CUTOFF,
    history_days: int = DEFAULT_HISTORY_DAYS,
    label_window_days: int = LABEL_WINDOW_DAYS,
) -> dict[str, pd.DataFrame]:
    """Three raw tables as DataFrames (string/typed columns as the files will hold them)."""
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D")
    end = np.datetime64(cutoff + dt.timedelta(days=label_window_days), "D")  # last drop day
    start = np.datetime64(cutoff - dt.timedelta(days=history_days), "D")
    cutoff64 = np.datetime64(cutoff, "D")
    h = _hidden_state(rng, n_diners, start, end)
    n, signup, segment_idx, region_idx = n_diners, h["signup"], h["segment_idx"], h["region_idx"]
    rate, loyalty, churn_at, diner_ids = h["rate"], h["loyalty"], h["churn_at"], h["diner_ids"]

    diners = pd.DataFrame(
        {
            "diner_id": diner_ids,
            "signup_date": signup,
            "segment": np.array(source.SEGMENTS)[segment_idx],
            "region": np.array(source.REGIONS)[region_idx],
            "loyalty_member": loyalty,
        }
    )
    # drop day: the backfill file for everyone before the export, then the signup day
    diners["dt"] = np.where(signup < start, start, signup).astype("datetime64[D]")

    # ---- orders: Poisson count over each diner's active span, uniform times inside it
    active_from = np.maximum(signup, start)
    active_to = np.minimum(churn_at, end + day)  # exclusive
    orders = _orders(rng, h, active_from, active_to, rate)

    # ---- email campaigns: regular ones reach a random share; the last one (day after the cutoff)
    # reaches everybody signed up by then and carries the label window.
    campaign_days = list(np.arange(start + 3 * day, cutoff64 - 6 * day, CAMPAIGN_EVERY_DAYS * day))
    campaign_days.append(cutoff64 + day)
    frames: list[pd.DataFrame] = []
    ev_counter = 0
    for c_no, cday in enumerate(campaign_days, start=1):
        last = c_no == len(campaign_days)
        eligible = signup < cday
        if not last:
            eligible &= rng.random(n) < CAMPAIGN_REACH
        who = np.flatnonzero(eligible)
        if who.size == 0:
            continue
        frame = _campaign_events(rng, h, who, cday, ev_counter)
        frames.append(frame)
        ev_counter += len(frame)
    events = _event_table(frames, end + day)
    return {"diners": diners, "orders": orders, "email_events": events}


def _event_table(frames: list[pd.DataFrame], until: Any) -> pd.DataFrame:
    """Campaign events before ``until`` (exclusive), in time order, with their ids and drop days."""
    events = pd.concat(frames, ignore_index=True)
    events = events[events["event_ts"] < until.astype("datetime64[s]")]
    events = events.sort_values("event_ts", kind="stable")
    events.insert(0, "event_id", "E" + events.pop("event_no").astype(str).str.zfill(10))
    events["dt"] = events["event_ts"].values.astype("datetime64[D]")
    return events


def _campaign_events(
    rng: np.random.Generator,
    h: dict[str, Any],
    who: np.ndarray,
    cday: Any,
    first_no: int,
    logit_shift: np.ndarray | float = 0.0,
    click_shift: np.ndarray | float = 0.0,
) -> pd.DataFrame:
    """One campaign email to ``who`` on ``cday``: sends, opens, clicks and conversions.
    ``logit_shift`` adds to each recipient's conversion logit (an offer's effect), ``click_shift``
    to the logit of clicking after opening (an offer variant's draw on clicks)."""
    # activity "now": diners who churned before the send barely respond
    alive = h["churn_at"][who] > cday
    p_conv = _sigmoid(_conversion_logit(h, who, alive) + logit_shift)
    engagement = h["engagement"][who]
    p_open = np.clip(0.08 + 0.85 * engagement, 0, 0.95)
    p_click = np.clip(0.15 + 0.5 * engagement, 0, 0.9)
    if np.any(click_shift):
        p_click = _sigmoid(np.log(p_click / (1 - p_click)) + click_shift)
    conv = rng.random(who.size) < p_conv
    opened = conv | (rng.random(who.size) < p_open)
    clicked = conv | (opened & (rng.random(who.size) < p_click))
    send_ts = cday.astype("datetime64[s]") + (9 * 3600 + rng.integers(0, 7200, who.size)).astype(
        "timedelta64[s]"
    )
    open_ts = send_ts + (rng.exponential(20 * 3600, who.size) + 60).astype("int64").astype(
        "timedelta64[s]"
    )
    click_ts = open_ts + rng.integers(5, 600, who.size).astype("timedelta64[s]")
    conv_ts = click_ts + (rng.exponential(2.5 * 86400, who.size) + 300).astype("int64").astype(
        "timedelta64[s]"
    )
    camp = f"C{cday.astype(dt.date):%Y%m%d}"
    parts, no = [], first_no
    for mask, ts, etype in (
        (np.ones(who.size, bool), send_ts, "send"),
        (opened, open_ts, "open"),
        (clicked, click_ts, "click"),
        (conv, conv_ts, "conversion"),
    ):
        k = int(mask.sum())
        parts.append(
            pd.DataFrame(
                {
                    "event_no": np.arange(no, no + k),
                    "diner_id": h["diner_ids"][who[mask]],
                    "campaign_id": camp,
                    "event_type": etype,
                    "event_ts": ts[mask],
                }
            )
        )
        no += k
    return pd.concat(parts, ignore_index=True)


def generate_outcomes(
    n_diners: int,
    *,
    days: int,
    seed: int = 7,
    cutoff: dt.date = DEFAULT_CUTOFF,
    history_days: int = DEFAULT_HISTORY_DAYS,
    label_window_days: int = LABEL_WINDOW_DAYS,
    offer_treated: Iterable[str] = (),
    vip_treated: Iterable[str] = (),
    offer_variants: Mapping[str, str] | None = None,
    variants: tuple[str, ...] = (),
) -> dict[str, pd.DataFrame]:
    """The ``days`` after the data date of :func:`generate` (same arguments): what happened next.

    The same seed rebuilds the same diners; a separate stream draws the future: orders of the
    diners still active, and the newsletter the day after the data date, to everybody, on which
    ``offer_treated`` diners convert more (``OFFER_EFFECT_LOGIT``); ``vip_treated`` diners order
    more often. So a campaign's true effect is known, and monitoring can be checked against it.
    ``offer_variants`` (diner -> the variant publish drew, of the campaign's ``variants``) scales
    each treated diner's odds of converting by the variant's true lift in its segment, and the
    odds of clicking after opening by its true click lift
    (:func:`~mlmodels.restaurant_chain.campaign_world.variant_lifts`), so a campaign rewarded on
    clicks has a true click rate per (segment, variant) to learn.
    """
    day = np.timedelta64(1, "D")
    end = np.datetime64(cutoff + dt.timedelta(days=label_window_days), "D")
    start = np.datetime64(cutoff - dt.timedelta(days=history_days), "D")
    h = _hidden_state(np.random.default_rng(seed), n_diners, start, end)
    # who had not churned by the data date stays active through the outcome window
    h["churn_at"] = np.where(h["churn_at"] > end, np.datetime64("2100-01-01"), h["churn_at"])
    rng = np.random.default_rng([seed, 1])
    first, until = end + day, end + (days + 1) * day
    ids = pd.Index(h["diner_ids"])
    offer = np.zeros(n_diners, bool)
    offer[ids.get_indexer(list(offer_treated))] = True
    vip = np.zeros(n_diners, bool)
    vip[ids.get_indexer(list(vip_treated))] = True
    active = (h["churn_at"] > end) & (h["signup"] <= end)
    active_from = np.full(n_diners, first)
    active_to = np.where(active, until, first).astype("datetime64[D]")
    rate = h["rate"] * np.where(vip, VIP_ORDER_RATE_BOOST, 1.0)
    orders = _orders(rng, h, active_from, active_to, rate, first_id=10**9)
    who = np.flatnonzero(h["signup"] <= end)
    shift = np.where(offer, OFFER_EFFECT_LOGIT, 0.0) + _variant_shift(
        h, ids, offer_variants, variants
    )
    clicks = _variant_shift(h, ids, offer_variants, variants, reward="click")
    newsletter = _campaign_events(rng, h, who, first, 9 * 10**9, shift[who], clicks[who])
    diners = pd.DataFrame({c: pd.Series(dtype=object) for c in source.TABLES["diners"].columns})
    diners["dt"] = pd.Series(dtype="datetime64[ns]")
    return {
        "diners": diners,
        "orders": orders[orders["order_ts"] < until.astype("datetime64[s]")],
        "email_events": _event_table([newsletter], until),
    }


def _variant_shift(
    h: dict[str, Any], ids: pd.Index, offer_variants: Mapping[str, str] | None,
    variants: tuple[str, ...], reward: str = "conversion",
) -> np.ndarray:  # fmt: skip
    """The log of each treated diner's variant lift in its segment (0 for everybody else), on
    converting or (``reward="click"``) on clicking through."""
    shift = np.zeros(ids.size)
    if not offer_variants:
        return shift
    lifts = variant_lifts(source.SEGMENTS, variants, reward=reward)
    where = ids.get_indexer(list(offer_variants))
    segments = np.asarray(source.SEGMENTS)[h["segment_idx"][where]]
    lift = [lifts[(s, v)] for s, v in zip(segments, offer_variants.values(), strict=True)]
    shift[where] = np.log(lift)
    return shift


def _format(table: str, df: pd.DataFrame) -> pd.DataFrame:
    out = df.drop(columns=["dt"]).copy()
    for col, kind in source.TABLES[table].columns.items():
        if kind == "date":
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%d")
        elif kind == "timestamp":
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out


def write_raw(
    tables: dict[str, pd.DataFrame],
    lake_uri: str,
    tenant: str,
    drop_days: tuple[dt.date, dt.date] | None = None,
) -> dict[str, int]:
    """Write one file per table and drop day (each table's first day to the last of any, or
    ``drop_days`` (first, last) for every table). Returns the number of files per table."""
    files: dict[str, int] = {}
    end_day = (
        drop_days[1].isoformat()
        if drop_days
        else max(str(pd.Timestamp(df["dt"].max()).date()) for df in tables.values())
    )
    for name, df in tables.items():
        spec = source.TABLES[name]
        formatted = _format(name, df)
        days = pd.to_datetime(df["dt"]).dt.strftime("%Y-%m-%d").to_numpy()
        order = np.argsort(days, kind="stable")
        days_sorted = days[order]
        formatted = formatted.iloc[order]
        uniq, first = np.unique(days_sorted, return_index=True)
        bounds = dict(
            zip(uniq, zip(first, [*list(first[1:]), len(days_sorted)], strict=False), strict=False)
        )
        # a source system drops a file every day, also on a day without rows
        first_day = drop_days[0].isoformat() if drop_days else (uniq[0] if len(uniq) else None)
        all_days = pd.date_range(first_day, end_day).strftime("%Y-%m-%d") if first_day else []
        for d in all_days:
            lo, hi = bounds.get(d, (0, 0))
            part = formatted.iloc[lo:hi]
            uri = raw_schema.raw_file_path(lake_uri, tenant, spec, d)
            if spec.fmt == "csv":
                data = part.to_csv(index=False, lineterminator="\n").encode()
            else:
                data = part.to_json(orient="records", lines=True).encode()
            lake.write_bytes_atomic(uri, data)
        files[name] = len(all_days)
    return files


def example_data(lake_uri: str, tenant: str, diners: int) -> dt.date:
    """A model's ``example_data`` hook: a deterministic raw zone of ``diners``; its data date."""
    write_raw(generate(diners, seed=11), lake_uri, tenant)
    return DEFAULT_DATA_DATE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlmodels.restaurant_chain.datagen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--customer", required=True, help="tenant id (the platform's customer)")
    p.add_argument(
        "--lake", default=os.environ.get("LAKE_URI"), help="lake URI (default $LAKE_URI)"
    )
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--diners", type=int, help="number of diners (overrides --size)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--cutoff",
        type=dt.date.fromisoformat,
        default=DEFAULT_CUTOFF,
        help="the training cutoff; drops go on for the label window after it, up to the data date "
        "to run the pipeline with",
    )
    p.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS)
    p.add_argument(
        "--outcome-days",
        type=int,
        help="instead: write the drops of this many days after the data date (what happened "
        "next), for the same --seed/--size/--cutoff",
    )
    p.add_argument("--offer-treated", help="file of diner ids that got the offer (one a line)")
    p.add_argument("--vip-treated", help="file of diner ids pushed as VIPs (one a line)")
    p.add_argument(
        "--campaigns",
        action="store_true",
        help="take the treated diners from the campaigns the platform's publish step recorded "
        "in the lake for the data date (the example models' treated arms)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if not args.lake:
        p.error("--lake or LAKE_URI is required")
    n = args.diners or SIZES[args.size]
    t0 = time.monotonic()
    shape = {"seed": args.seed, "cutoff": args.cutoff, "history_days": args.history_days}
    data_date = args.cutoff + dt.timedelta(days=LABEL_WINDOW_DAYS)
    if args.outcome_days:
        info = _write_outcomes(args, n, shape, data_date)
    else:
        info = _write_history(args, n, shape, data_date)
    info["seconds"] = round(time.monotonic() - t0, 1)
    json.dump(info, sys.stdout, indent=2)
    print()
    return 0


def _write_history(
    args: argparse.Namespace, n: int, shape: dict[str, Any], data_date: dt.date
) -> dict[str, Any]:
    """The customer's history up to the data date, then ``_datagen.json`` (its parameters and data
    date), written last: the embedded platform takes its presence for a whole drop."""
    tables = generate(n, **shape)
    files = write_raw(tables, args.lake, args.customer)
    info = {
        "tenant": args.customer,
        "seed": args.seed,
        "diners": n,
        "rows": {k: len(v) for k, v in tables.items()},
        "files": files,
        "training_cutoff": args.cutoff.isoformat(),
        "data_date": data_date.isoformat(),
        "label_window_days": LABEL_WINDOW_DAYS,
        "history_days": args.history_days,
    }
    marker = lake.join(args.lake, "raw", f"customer={args.customer}", "_datagen.json")
    lake.write_json_atomic(marker, info)
    return info


def _write_outcomes(
    args: argparse.Namespace, n: int, shape: dict[str, Any], data_date: dt.date
) -> dict[str, Any]:
    """The drops after the data date (what happened next) for the same diners, with the treated
    diners (from files, or the campaigns publish recorded) answering to their treatment."""
    treated: dict[str, Any] = {k: _ids(getattr(args, k)) for k in ("offer_treated", "vip_treated")}
    if args.campaigns:  # the arms and offer variants publish recorded
        treated = with_campaigns(treated, args.lake, args.customer, data_date)
    tables = generate_outcomes(n, days=args.outcome_days, **shape, **treated)
    last = data_date + dt.timedelta(days=args.outcome_days)
    files = write_raw(tables, args.lake, args.customer, (data_date + _DAY, last))
    return {
        "tenant": args.customer,
        "outcome_window": [(data_date + _DAY).isoformat(), last.isoformat()],
        "treated": {k: len(v) for k, v in treated.items()},
        "rows": {k: len(v) for k, v in tables.items()},
        "files": files,
    }


_DAY = dt.timedelta(days=1)


def campaign_arms(lake_uri: str, tenant: str, data_date: dt.date) -> dict[str, list[str]]:
    """Treated diners of each example model's campaign for ``data_date``, from the arms publish
    committed (``<lake>/campaign/<model>/customer=<tenant>/run=*/``); held-out ones stay out."""
    from model_steps.campaign import CAMPAIGN_ZONE, TREATED

    out: dict[str, list[str]] = {}
    for model, kind in TREATMENTS.items():
        root = lake.join(lake_uri, CAMPAIGN_ZONE, model, f"customer={tenant}")
        for run in lake.list_dirs(root):
            uri = lake.join(root, run)
            if not lake.exists(lake.join(uri, lake.MANIFEST)):
                continue
            table, manifest = lake.read_parquet_table(uri)
            if table is not None and manifest.get("data_date") == data_date.isoformat():
                rows = zip(
                    table[manifest["key"]].to_pylist(), table["arm"].to_pylist(), strict=True
                )
                out.setdefault(kind, []).extend(k for k, arm in rows if arm == TREATED)
    return out


def with_campaigns(
    treated: dict[str, Any], lake_uri: str, tenant: str, data_date: dt.date
) -> dict[str, Any]:
    """``generate_outcomes``' treatment arguments plus what publish recorded for ``data_date``:
    the treated arms and, where the propensity campaign drew offer variants, each diner's."""
    out = dict(treated)
    for kind, ids in campaign_arms(lake_uri, tenant, data_date).items():
        out[kind] = [*out[kind], *ids]
    root = lake.join(lake_uri, "campaign", "customer_propensity", f"customer={tenant}")
    for run in lake.list_dirs(root):
        uri = lake.join(root, run)
        if not lake.exists(lake.join(uri, lake.MANIFEST)):
            continue
        manifest = lake.read_manifest(uri)
        if manifest.get("data_date") != data_date.isoformat() or "variants" not in manifest:
            continue
        table, _ = lake.read_parquet_table(uri, columns=[manifest["key"], "variant"])
        pairs = zip(table[manifest["key"]].to_pylist(), table["variant"].to_pylist(), strict=True)
        out["offer_variants"] = {k: v for k, v in pairs if v is not None}
        out["variants"] = tuple(manifest["variants"])
    return out


def _ids(path: str | None) -> list[str]:
    if not path:
        return []
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip()]


if __name__ == "__main__":
    raise SystemExit(main())
