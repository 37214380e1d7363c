"""The VIP segment: the diners with the highest expected spend, pushed with their expectation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from model_steps.model_api import ModelContext


def crm_select(scores: Any, ctx: ModelContext) -> Any:
    """The top ``vip_fraction`` by expected spend, above ``min_expected_spend``, best first."""
    import pyarrow.compute as pc

    s = ctx.settings
    eligible = scores.filter(pc.greater_equal(scores["prediction"], s.min_expected_spend))
    if eligible.num_rows == 0:
        return eligible
    top = min(eligible.num_rows, max(1, math.ceil(s.vip_fraction * scores.num_rows)))
    keys = [("prediction", "descending"), ("diner_id", "ascending")]
    return eligible.take(pc.sort_indices(eligible, sort_keys=keys)[:top])


def crm_record(row: Mapping[str, Any], ctx: ModelContext) -> dict[str, Any]:
    days = ctx.platform.data.label_window_days
    return {"segment": ctx.settings.segment, f"expected_spend_{days}d": round(row["prediction"], 2)}
