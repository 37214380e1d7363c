"""The ``model:`` settings section of customer_propensity (layered like every section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PropensitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_units: tuple[int, ...] = Field((128, 64), min_length=1, description="MLP layer widths")
    dropout: float = Field(0.1, ge=0, lt=1)
    top_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="share of scored diners selected, by score; crm.control_fraction of them are "
        "held out as control, so about top_fraction * (1 - control_fraction) are sent",
    )
    offer_code: str = Field("spring-offer", min_length=1, max_length=64)
