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

from dataclasses import dataclass

SEGMENTS: tuple[str, ...] = ("family", "student", "professional", "senior", "occasional")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
CHANNELS: tuple[str, ...] = ("dine_in", "takeaway", "delivery", "app")
EVENT_TYPES: tuple[str, ...] = ("send", "open", "click", "conversion")


@dataclass(frozen=True)
class RawTable:
    name: str
    fmt: str  # "csv" or "jsonl"
    # column -> logical type: string | date | timestamp | double | int
    columns: dict[str, str]
    key: str | None = None  # unique per row across the table (checked by ingest)
    required: tuple[str, ...] = ()  # must never be null/empty
    ts_column: str | None = None  # the event time that must not lie after the file's drop day
    non_negative: tuple[str, ...] = ()

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
)

TABLES: dict[str, RawTable] = {t.name: t for t in (DINERS, ORDERS, EMAIL_EVENTS)}


def raw_table_root(lake_uri: str, tenant: str, table: str) -> str:
    return f"{lake_uri.rstrip('/')}/raw/customer={tenant}/{table}"


def raw_file_path(lake_uri: str, tenant: str, table: str, day: str) -> str:
    t = TABLES[table]
    return f"{raw_table_root(lake_uri, tenant, table)}/dt={day}/{table}_{day}.{t.ext}"
