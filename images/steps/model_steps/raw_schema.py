"""How a raw table is declared, and where its drops live. Models declare their tables with
:class:`RawTable` (``Model.raw_tables``); ingest's checks (:mod:`model_steps.raw_reader`) run on any
declaration. The platform's customer (``--customer``) is called the **tenant** in the data code.

Raw layout (one folder per table and drop day, as a source system would export them)::

    <lake>/raw/customer=<tenant>/<table>/dt=YYYY-MM-DD/<table>_YYYY-MM-DD.<csv|jsonl>
"""

from __future__ import annotations

from dataclasses import dataclass


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
    # Point in time. An event table (windowed) is read over the lookback before a cutoff and the
    # label window after it; an entity table (not windowed: signups, a product catalogue) is read
    # whole up to the cutoff, and its key is checked for uniqueness across all drops.
    windowed: bool = True

    @property
    def ext(self) -> str:
        return self.fmt


def raw_table_root(lake_uri: str, tenant: str, table: str) -> str:
    return f"{lake_uri.rstrip('/')}/raw/customer={tenant}/{table}"


def raw_file_path(lake_uri: str, tenant: str, table: RawTable, day: str) -> str:
    root = raw_table_root(lake_uri, tenant, table.name)
    return f"{root}/dt={day}/{table.name}_{day}.{table.ext}"
