"""A campaign's offer variants and allocation policy, as a model or a customer declares them.

Pure data (pydantic), validated where it is declared: the control plane at DAG parse time, the step
when it starts, each with an error that names the field. What a variant sends is a flat mapping of
CRM fields (offer code, template, discount...): values, never templates.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VARIANT_ID = r"^[a-z0-9][a-z0-9_-]{0,39}$"
CRM_FIELD = r"^[a-z][a-z0-9_]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    """One offer variant: what the CRM receives for a contact allocated to it."""

    id: str = Field(pattern=VARIANT_ID, description="stable id: the posterior is kept under it")
    crm: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="fields sent with the contact (an offer code, a template, ...)",
    )
    cost: float = Field(0.0, ge=0, description="cost per contact sent, in the reward's unit")
    retired: bool = Field(False, description="gets no traffic; its posterior is kept")

    @model_validator(mode="after")
    def _crm_field_names(self) -> Variant:
        import re

        bad = [k for k in self.crm if not re.match(CRM_FIELD, k)]
        if bad:
            raise ValueError(f"crm field names must match {CRM_FIELD}: {bad}")
        return self


class AllocationPolicy(_Strict):
    """How the treated arm is spread over the live variants, per segment."""

    kind: Literal["thompson", "epsilon_greedy", "uniform"] = "thompson"
    floor: float = Field(0.02, ge=0, le=0.5, description="minimum share of each live variant")
    exploration: float = Field(0.1, ge=0, le=1, description="uniform slice mixed into the shares")
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon_greedy only")
    draws: int = Field(4000, ge=100, le=1_000_000, description="Monte Carlo draws (thompson)")


class Campaign(_Strict):
    """A campaign of one model: its variants, the reward that teaches the policy, the policy."""

    id: str = Field(pattern=VARIANT_ID)
    variants: list[Variant] = Field(min_length=1)
    segment_column: str | None = Field(
        None, description="column of the model's scores naming each contact's segment; "
        "none = one segment for everybody"
    )  # fmt: skip
    reward: Literal["click", "conversion"] = "conversion"
    policy: AllocationPolicy = AllocationPolicy()
    priority: int = Field(0, description="arbitration between campaigns: higher wins")

    @model_validator(mode="after")
    def _variants_are_consistent(self) -> Campaign:
        ids = [v.id for v in self.variants]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"variant ids must be unique, repeated: {duplicated}")
        live = self.live()
        if not live:
            raise ValueError("every variant is retired: at least one must stay live")
        if self.policy.floor * len(live) > 1:
            raise ValueError(
                f"policy.floor {self.policy.floor} x {len(live)} live variants exceeds 1"
            )
        return self

    def live(self) -> list[Variant]:
        return [v for v in self.variants if not v.retired]
