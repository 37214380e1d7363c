"""Every move of a customer's ``champion`` alias is an audited event, written before the alias moves.

One function moves the alias (:func:`move_champion`); it first records the event as an immutable JSON
object in the gate's own lake zone (``CustomerLayout.champion_history``: only evaluate's identity may
write there, lake_zones.json), then sets the alias and the registered model's tag
``mlops.champion_last_move`` (only the gate holds EDIT on the registered model). An event is keyed by
the run and the version it moves to, so a retry of the same run finds its event and appends nothing;
a crash between the event and the alias is repaired by the retry, which sets the alias again.
:func:`history` returns the events in order (a rollback picks from it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mlplatform_contract.layout import CustomerLayout, join
from model_steps import lake
from model_steps.tracking import CHAMPION_ALIAS, champion_version

Actor = Literal["gate", "operator", "automatic"]
LAST_MOVE_TAG = "mlops.champion_last_move"
# on every version the gate registers: "passed" or "refused" (a rollback may pick passed ones only)
VERDICT_TAG = "mlops.gate_verdict"


class ChampionEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pipeline: str
    customer: str
    registered_model: str
    from_version: str | None
    to_version: str
    run_key: str
    reason: str
    actor: Actor
    at: dt.datetime  # UTC


def event_uri(layout: CustomerLayout, run_key: str, to_version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", run_key)
    return join(layout.champion_history, f"run={safe}__to=v{to_version}.json")


def move_champion(
    layout: CustomerLayout, name: str, to_version: str, *, run_key: str, reason: str,
    actor: Actor, profile_uri: str | None = None, client: Any = None,
) -> ChampionEvent:  # fmt: skip
    """Record the move of ``name``'s champion to ``to_version`` (once per run and version), then
    move the alias and, given the version's training profile, make it validate's drift reference
    (the champion's profile goes with the champion). Returns the event (the one already recorded,
    on a retry)."""
    import mlflow

    client = client or mlflow.MlflowClient()
    uri = event_uri(layout, run_key, to_version)
    if lake.exists(uri):
        event = ChampionEvent.model_validate(lake.read_json(uri))
    else:
        current = champion_version(name)
        event = ChampionEvent(
            pipeline=layout.pipeline, customer=layout.customer, registered_model=name,
            from_version=None if current is None else str(current.version),
            to_version=str(to_version), run_key=run_key, reason=reason, actor=actor,
            at=dt.datetime.now(dt.UTC),
        )  # fmt: skip
        lake.write_json_atomic(uri, event.model_dump(mode="json"))
    client.set_registered_model_alias(name, CHAMPION_ALIAS, str(to_version))
    client.set_registered_model_tag(name, LAST_MOVE_TAG, json.dumps(event.model_dump(mode="json")))
    if profile_uri:
        lake.write_json_atomic(layout.champion_profile, lake.read_json(profile_uri))
    return event


def history(layout: CustomerLayout) -> list[ChampionEvent]:
    """Every recorded move of the customer's champion, oldest first."""
    events = [
        ChampionEvent.model_validate(lake.read_json(join(layout.champion_history, name)))
        for name in lake.list_files(layout.champion_history)
        if name.endswith(".json")
    ]
    return sorted(events, key=lambda e: (e.at, e.run_key))
