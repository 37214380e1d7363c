"""The preferred-channel segment: the diners likeliest to order, each with the channel to reach
them on (the likeliest of the four channels, whatever the chance of no order) and its odds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlmodels.preferred_channel.features import CHANNELS, NO_ORDER
from model_steps.model_api import ModelContext

SCORE = "score_"  # the platform's class columns: score_<class> (mlplatform_contract.tasks)


def crm_select(scores: Any, ctx: ModelContext) -> Any:
    """The top ``top_fraction`` by the chance of any order (1 - P(none)), ties by diner_id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = scores.num_rows
    if n == 0:
        return scores
    top = min(n, max(1, math.ceil(ctx.settings.top_fraction * n)))
    keys = pa.table({"none": scores[f"{SCORE}{NO_ORDER}"], "id": scores["diner_id"]})
    order = pc.sort_indices(keys, sort_keys=[("none", "ascending"), ("id", "ascending")])
    return scores.take(order[:top])


def crm_record(row: Mapping[str, Any], ctx: ModelContext) -> dict[str, Any]:
    """The segment, the preferred channel, the chance of an order and each channel's share."""
    p = {c: float(row[f"{SCORE}{c}"]) for c in CHANNELS}
    ordering = sum(p.values())
    best = max(CHANNELS, key=lambda c: (p[c], -CHANNELS.index(c)))
    return {
        "segment": ctx.settings.segment,
        "preferred_channel": best,
        "order_probability": round(ordering, 4),
        **{f"channel_share_{c}": round(p[c] / ordering, 4) if ordering else 0.0 for c in CHANNELS},
    }
