"""The raw zone's source tables: what the tenant's systems drop, and how ingest reads it.

Naming: the platform's customer (``--customer``, e.g. ``acme-foods``, a restaurant chain) is called the
**tenant** in the data code; the chain's own guests, the rows of the data, are **diners**.

Raw layout (one folder per table and drop day, as a source system would export them)::

    <lake>/raw/customer=<tenant>/<table>/dt=YYYY-MM-DD/<table>_YYYY-MM-DD.<csv|jsonl>

``diners`` has one initial backfill drop (everyone who signed up before the export started) and then
a daily delta of new signups; ``orders`` (POS/online orders) is a daily CSV; ``email_events`` (the email
service provider's send/open/click/conversion events) is daily JSON lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SEGMENTS: tuple[str, ...] = ("family", "student", "professional", "senior", "occasional")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
CHANNELS: tuple[str, ...] = ("dine_in", "takeaway", "delivery", "app")
EVENT_TYPES: tuple[str, ...] = ("send", "open", "click", "conversion")


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

    @property
    def ext(self) -> str:
        return self.fmt


DINERS = RawTable(
    name="diners",
    fmt="csv",
    columns={
        "diner_id": "string",
        "signup_date": "date",
        "segment": "string",
        "region": "string",
        "loyalty_member": "int",
    },
    key="diner_id",
    required=("diner_id", "signup_date", "segment", "region"),
    ts_column="signup_date",
    bounds={"loyalty_member": (0, 1)},
    # one-hot encoded features: an unknown segment or region would be all zeros
    domains={"segment": Domain(SEGMENTS), "region": Domain(REGIONS)},
    # the first drop is a backfill of everybody who signed up before the export began
    volume=VolumeCheck(backfill_age_days=7),
)

ORDERS = RawTable(
    name="orders",
    fmt="csv",
    columns={
        "order_id": "string",
        "diner_id": "string",
        "order_ts": "timestamp",
        "amount": "double",
        "channel": "string",
        "store_id": "string",
    },
    key="order_id",
    required=("order_id", "diner_id", "order_ts", "amount", "channel"),
    ts_column="order_ts",
    non_negative=("amount",),
    # no restaurant ticket reaches 100k; the bound also keeps sums far from overflowing
    bounds={"amount": (None, 100_000.0)},
    domains={"channel": Domain(CHANNELS)},  # the channel-mix shares must add up
    foreign_keys=(ForeignKey("diner_id", "diners"),),
    volume=VolumeCheck(backfill_age_days=7),
)

EMAIL_EVENTS = RawTable(
    name="email_events",
    fmt="jsonl",
    columns={
        "event_id": "string",
        "diner_id": "string",
        "campaign_id": "string",
        "event_type": "string",
        "event_ts": "timestamp",
    },
    key="event_id",
    required=("event_id", "diner_id", "campaign_id", "event_type", "event_ts"),
    ts_column="event_ts",
    # the features count known event types only: a new one (bounce, unsubscribe) is ignored
    domains={"event_type": Domain(EVENT_TYPES, severity="warning")},
    foreign_keys=(ForeignKey("diner_id", "diners"),),
    # no volume check: campaign days hold thousands of sends, days between them a few opens
)

TABLES: dict[str, RawTable] = {t.name: t for t in (DINERS, ORDERS, EMAIL_EVENTS)}


def raw_table_root(lake_uri: str, tenant: str, table: str) -> str:
    return f"{lake_uri.rstrip('/')}/raw/customer={tenant}/{table}"


def raw_file_path(lake_uri: str, tenant: str, table: str, day: str) -> str:
    t = TABLES[table]
    return f"{raw_table_root(lake_uri, tenant, table)}/dt={day}/{table}_{day}.{t.ext}"
