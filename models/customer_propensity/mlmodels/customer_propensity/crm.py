"""Which scored diners get the offer, and what their CRM record says."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from model_steps.model_api import ModelContext


def crm_select(scores: Any, ctx: ModelContext) -> Any:
    """The top ``top_fraction`` of diners by score (ties by diner_id), best first (an Arrow table)."""
    import pyarrow.compute as pc

    n = scores.num_rows
    if n == 0:
        return scores
    top = min(n, max(1, math.ceil(ctx.settings.top_fraction * n)))
    order = pc.sort_indices(scores, sort_keys=[("score", "descending"), ("diner_id", "ascending")])
    return scores.take(order[:top])


def crm_record(row: Mapping[str, Any], ctx: ModelContext) -> dict[str, Any]:
    return {"propensity_score": row["score"], "offer_code": ctx.settings.offer_code}
