"""How a raw table is declared, and where its drops live. Models declare their tables with
:class:`RawTable` (``Model.raw_tables``); ingest's checks (:mod:`model_steps.raw_reader`) and guards
(:mod:`model_steps.raw_guards`) run on any declaration. The platform's customer (``--customer``) is
called the **tenant** in the data code.

Raw layout (one folder per table and drop day, as a source system would export them)::

    <lake>/raw/customer=<tenant>/<table>/dt=YYYY-MM-DD/<table>_YYYY-MM-DD.<csv|jsonl>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlplatform_contract.layout import CustomerLayout

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Domain:
    """The values a categorical column may hold. An unknown value is an ``error`` where the model
    cannot use the row correctly (a one-hot or share feature would silently miss it) and a
    ``warning`` where it is only ignored (a new event type the features do not count)."""

    values: tuple[str, ...]
    severity: Severity = "error"


@dataclass(frozen=True)
class ForeignKey:
    """``column`` must hold a key of the declared table ``table`` (its ``key`` column): a row
    whose value that table does not have is an orphan (warning; error above the share)."""

    column: str
    table: str
    max_orphan_share: float | None = None  # None: the raw_guards.max_orphan_share setting


@dataclass(frozen=True)
class VolumeCheck:
    """Options of the per-drop row-count check (thresholds are the raw_guards.volume settings).

    A drop most of whose rows have a ``ts_column`` older than ``backfill_age_days`` before its drop
    day is a backfill (a full export): it is compared only with earlier backfills, and the daily
    deltas only with deltas. None: the table has no backfills."""

    backfill_age_days: int | None = None


@dataclass(frozen=True)
class RawTable:
    name: str
    fmt: str  # "csv" or "jsonl"
    # column -> logical type: string | date | timestamp | double | int
    columns: dict[str, str]
    key: str | None = None  # unique per row across every drop read (checked by ingest)
    required: tuple[str, ...] = ()  # must never be null/empty
    ts_column: str | None = None  # the event time that must not lie after the file's drop day
    non_negative: tuple[str, ...] = ()
    # numeric column -> (lowest, highest) allowed value, None for no bound on that side; every
    # double value must also be finite (no NaN/Infinity)
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)  # categorical column -> its values
    foreign_keys: tuple[ForeignKey, ...] = ()
    volume: VolumeCheck | None = None  # None: no row-count check (bursty tables)
    # Point in time. An event table (windowed) is read over the lookback before a cutoff and the
    # label window after it; an entity table (not windowed: signups, a product catalogue) is read
    # whole up to the cutoff.
    windowed: bool = True

    @property
    def ext(self) -> str:
        return self.fmt


def raw_table_root(lake_uri: str, tenant: str, table: str) -> str:
    return CustomerLayout(lake_uri, "", tenant).raw_table(table)


def raw_file_path(lake_uri: str, tenant: str, table: RawTable, day: str) -> str:
    root = raw_table_root(lake_uri, tenant, table.name)
    return f"{root}/dt={day}/{table.name}_{day}.{table.ext}"
