"""The example tenant's raw tables: what a restaurant chain's systems drop into the raw zone.

A *source* package, not a model: several models read the same tables, so their declarations live
once, here. The chain's guests, the rows of the data, are **diners**.

``diners`` has one initial backfill drop (everyone who signed up before the export started) and then
a daily delta of new signups; ``orders`` (POS/online orders) is a daily CSV; ``email_events`` (the
email service provider's send/open/click/conversion events) is daily JSON lines.
"""

from __future__ import annotations

from model_steps.raw_schema import Domain, ForeignKey, RawTable, VolumeCheck

SEGMENTS: tuple[str, ...] = ("family", "student", "professional", "senior", "occasional")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
CHANNELS: tuple[str, ...] = ("dine_in", "takeaway", "delivery", "app")
EVENT_TYPES: tuple[str, ...] = ("send", "open", "click", "conversion")

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
    windowed=False,
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
