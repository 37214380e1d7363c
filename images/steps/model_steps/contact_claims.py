"""Contact claims: how the publish of one campaign learns what the others of the same day selected.

Every publish of a customer commits, before it holds out a control arm or sends anything, a *claim*
for the day (the run's data date) in one folder shared by all the customer's pipelines::

    <lake>/publish/_claims/customer=<c>/day=<data date>/
        candidates/<pipeline>/campaign=<id>/run=<run key>/   the selection: contact, value (parquet)
        claim-000001.json, claim-000002.json, ...            the order claims were committed in
        decisions/slot=000001/<attempt>.parquet              contact, won, beaten_by
        decision-000001.json, ...                            which decision file is the decision

A claim file and a decision file are created only if absent (a local hard link, S3's conditional
PUT ``If-None-Match: *``): two runs can never both get slot k, nor both decide slot k. Decisions
are made in slot order; the decision of slot k counts every contact won by slots before k against
the frequency cap (their messages may be out: nothing calls them back), and arbitrates claim k's
contacts against the claims committed after it that are still undecided, by the declared rule
(:func:`model_steps.arbitration.arbitrate`). Whoever needs slot k's decision and finds none makes it
(the run of slot k or a later one), so a run that died after claiming holds nobody up. A retry finds
its claim by pipeline, campaign and run key and reads its committed decision: the same contacts,
whatever was claimed since.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_steps import arbitration, lake

log = logging.getLogger(__name__)

CLAIM, DECISION = "claim-", "decision-"


def create_once(uri: str, data: bytes) -> bool:
    """Write ``uri`` only if nothing is there; False when another writer got there first."""
    if lake.is_local(uri):
        path = lake.local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=os.path.dirname(path), delete=False) as tmp:
            tmp.write(data)
        try:
            os.link(tmp.name, path)  # atomic, and fails if the name exists
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp.name)
    fs, path = lake.filesystem(uri)
    try:
        fs.pipe_file(path, data, mode="create")  # S3's conditional PUT, If-None-Match: *
        return True
    except FileExistsError:  # 412 Precondition Failed
        return False
    except OSError:  # 409: a concurrent conditional write to the same key; one of them won
        if lake.exists(uri):
            return False
        raise


@dataclass(frozen=True)
class Claim:
    day_uri: str
    slot: int
    record: dict[str, Any]

    @property
    def label(self) -> str:
        """The campaign as arbitration names it: pipeline/campaign#slot (unique in the day)."""
        return f"{self.record['pipeline']}/{self.record['campaign']}#{self.slot}"


def _slots(day_uri: str, prefix: str) -> list[int]:
    return sorted(int(f[len(prefix) : -5]) for f in lake.list_files(day_uri)
                  if f.startswith(prefix) and f.endswith(".json"))  # fmt: skip


def _name(prefix: str, slot: int) -> str:
    return f"{prefix}{slot:06d}.json"


def claims(day_uri: str) -> list[Claim]:
    return [Claim(day_uri, s, lake.read_json(lake.join(day_uri, _name(CLAIM, s))))
            for s in _slots(day_uri, CLAIM)]  # fmt: skip


def claim(
    day_uri: str, record: dict[str, Any], contacts: Sequence[str], values: np.ndarray
) -> Claim:
    """This run's claim: the committed one on a retry, else its candidates committed, then the
    next free slot taken (create-if-absent; a lost race tries the next slot)."""
    import pyarrow as pa

    identity = {k: record[k] for k in ("pipeline", "campaign", "run_key")}
    for found in claims(day_uri):
        if {k: found.record.get(k) for k in identity} == identity:
            log.info("contact claim: slot %d of %s is this run's (a retry)", found.slot, day_uri)
            return found
    uri = lake.join(day_uri, "candidates", record["pipeline"], f"campaign={record['campaign']}",
                    f"run={record['run_key']}")  # fmt: skip
    table = pa.table({"contact": pa.array(list(contacts), pa.string()),
                      "value": pa.array(values, pa.float64())})  # fmt: skip
    lake.commit_parquet_table(uri, [table], {"table": "contact_claim", **identity})
    full = {**record, "candidates": uri, "contacts": len(contacts)}
    slot = (_slots(day_uri, CLAIM) or [0])[-1] + 1
    while not create_once(lake.join(day_uri, _name(CLAIM, slot)), json.dumps(full).encode()):
        slot += 1
    return Claim(day_uri, slot, full)


def _candidates(c: Claim) -> Any:
    table, _ = lake.read_parquet_table(c.record["candidates"], columns=["contact", "value"])
    return table


def decision(c: Claim, every: list[Claim] | None = None) -> Any:
    """Slot ``c``'s committed decision (contact, won, beaten_by): read, or made in slot order."""
    import pyarrow.parquet as pq

    every = every if every is not None else claims(c.day_uri)
    uri = lake.join(c.day_uri, _name(DECISION, c.slot))
    if not lake.exists(uri):
        used, owners = _sends_before(c, every)
        table = _decide(c, [e for e in every if e.slot > c.slot], used, owners)
        part = lake.join(c.day_uri, "decisions", f"slot={c.slot:06d}",
                         f"{lake.new_attempt_id()}.parquet")  # fmt: skip
        _write_parquet(part, table)
        if not create_once(uri, json.dumps({"file": part, "won": _won(table)}).encode()):
            lake.remove_tree(part)  # another run decided slot k first: its decision stands
    fs, path = lake.filesystem(lake.read_json(uri)["file"])
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh)


def _sends_before(c: Claim, every: list[Claim]) -> tuple[dict[str, int], dict[str, str]]:
    """(sends per contact, the first campaign that won it) over the decisions before slot ``c``."""
    used: dict[str, int] = {}
    owners: dict[str, str] = {}
    for earlier in (e for e in every if e.slot < c.slot):
        table = decision(earlier, every)
        won = table.filter(table["won"])["contact"].to_pylist()
        for contact in won:
            used[contact] = used.get(contact, 0) + 1
            owners.setdefault(contact, earlier.label)
    return used, owners


def _won(table: Any) -> int:
    return int(sum(table["won"].to_pylist()))


def _write_parquet(uri: str, table: Any) -> None:
    import pyarrow.parquet as pq

    fs, path = lake.filesystem(uri)
    fs.makedirs(os.path.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh)


def _decide(c: Claim, later: list[Claim], used: dict[str, int], owners: dict[str, str]) -> Any:
    """Claim ``c``'s rows against the later, undecided claims, by ``c``'s rule and cap; a contact
    the cap denies names the earlier campaign that won it."""
    import pyarrow as pa

    parts = [(x, _candidates(x)) for x in [c, *later]]
    sizes = [t.num_rows for _, t in parts]
    candidates = arbitration.Candidates(
        campaigns=np.repeat(np.array([x.label for x, _ in parts], dtype=object), sizes),
        contacts=np.array([k for _, t in parts for k in t["contact"].to_pylist()], dtype=object),
        priority=np.repeat(np.array([x.record["priority"] for x, _ in parts], dtype=float), sizes),
        value=np.concatenate([t["value"].to_numpy(zero_copy_only=False) for _, t in parts]),
    )
    made = arbitration.arbitrate(candidates, c.record["rule"], int(c.record["cap"]), used)
    n, contacts = sizes[0], parts[0][1]["contact"].to_pylist()
    beaten = [b or owners.get(k) for b, k in zip(made.beaten_by[:n], contacts, strict=True)]
    return pa.table({
        "contact": pa.array(contacts, pa.string()),
        "won": pa.array(made.sent[:n], pa.bool_()),
        "beaten_by": pa.array([None if s else b for s, b in zip(made.sent[:n], beaten,
                                                                 strict=True)], pa.string()),
    })  # fmt: skip
