"""The ``model:`` settings section of next_spend."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SpendSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deep_units: tuple[int, ...] = Field((64, 32), min_length=1, description="deep path widths")
    initial_spend: float = Field(1.0, description="softplus shift at initialisation")
    vip_fraction: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="share of scored diners selected for the VIP segment; crm.control_fraction "
        "of them are held out as control, so about vip_fraction * (1 - control_fraction) are sent",
    )
    min_expected_spend: float = Field(0.0, ge=0, description="never push a diner expected below")
    segment: str = Field("vip", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="CRM segment name")
