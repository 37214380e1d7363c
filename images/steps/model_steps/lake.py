"""Small filesystem layer over the lake: ``file://`` locally, ``s3://``/``s3a://`` in the cluster.

Spark speaks ``s3a://`` (hadoop-aws); Python readers (pandas, pyarrow, GX) speak ``s3://`` through
fsspec/s3fs. Both name the same objects, so the lake URI may use either scheme and each reader gets
its own spelling from :func:`spark_uri` / :func:`fsspec_uri`.

Commit protocol (works on S3, which has no atomic rename): a step writes its data under a fresh
``attempt=<id>/`` folder, then writes ``_MANIFEST.json`` last (a single PUT or an ``os.replace``, both
atomic). Readers only trust a table through its manifest, which names the attempt folder and files;
a retry writes a new attempt and replaces the manifest, then removes older attempts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from mlplatform_contract.layout import MANIFEST, join

T = TypeVar("T")


def fsspec_uri(uri: str) -> str:
    return "s3://" + uri[len("s3a://") :] if uri.startswith("s3a://") else uri


def spark_uri(uri: str) -> str:
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def is_local(uri: str) -> bool:
    return uri.startswith("file://") or "://" not in uri


def local_path(uri: str) -> str:
    """The filesystem path of a ``file://`` URI (or a plain path)."""
    if uri.startswith("file://"):
        return urlparse(uri).path
    if "://" in uri:
        raise ValueError(f"{uri} is not a local path")
    return uri


def filesystem(uri: str):  # type: ignore[no-untyped-def]
    """(fsspec filesystem, path inside it) for a lake URI."""
    import fsspec

    uri = fsspec_uri(uri)
    if is_local(uri):
        return fsspec.filesystem("file"), local_path(uri)
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as fh:
        return fh.read()


def read_head(uri: str, n: int = 4096) -> bytes:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as fh:
        return fh.read(n)


def size(uri: str) -> int:
    fs, path = filesystem(uri)
    return int(fs.size(path))


def write_bytes_atomic(uri: str, data: bytes) -> None:
    if is_local(uri):
        path = local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "wb", dir=os.path.dirname(path), delete=False, suffix=".tmp"
        ) as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
        return
    fs, path = filesystem(uri)
    fs.pipe_file(path, data)  # one PUT: atomic on S3


def write_json_atomic(uri: str, obj: Any) -> None:
    write_bytes_atomic(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def list_dirs(uri: str) -> list[str]:
    """Names of the immediate sub-folders of ``uri`` (empty if it does not exist)."""
    fs, path = filesystem(uri)
    if not fs.exists(path):
        return []
    return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False) if fs.isdir(p))


def list_files(uri: str) -> list[str]:
    fs, path = filesystem(uri)
    if not fs.exists(path):
        return []
    return sorted(os.path.basename(p) for p in fs.ls(path, detail=False) if fs.isfile(p))


def remove_tree(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def put_tree(local_dir: str, uri: str) -> None:
    """Copy a local folder into the lake (used for GX data docs)."""
    if is_local(uri):
        import shutil

        dest = local_path(uri)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        shutil.copytree(local_dir, dest)
        return
    fs, path = filesystem(uri)
    fs.put(local_dir.rstrip("/") + "/", path, recursive=True)


def new_attempt_id() -> str:
    return uuid.uuid4().hex[:12]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(table_uri: str) -> dict[str, Any]:
    """The committed manifest of a table folder, or a clear error if the table was never committed."""
    uri = join(table_uri, MANIFEST)
    if not exists(uri):
        from model_steps.contract import StepError

        raise StepError(
            f"{table_uri} has no {MANIFEST}: the table was never committed "
            "(did the producing step run and succeed for this run id?)"
        )
    return read_json(uri)


@dataclass(frozen=True)
class Attempt:
    """One write of a table: its parts go below :attr:`uri`; :meth:`commit` makes it the table.

    The one commit protocol of every table (ingest's, score's, the campaign's, the monitor's):
    parts into a fresh ``attempt=<id>/`` folder, then the manifest naming the attempt and its files
    (the commit point: one atomic write), then the older attempts of a retry are removed."""

    table_uri: str
    name: str

    @property
    def uri(self) -> str:
        return join(self.table_uri, self.name)

    def commit(self, manifest: dict[str, Any], files: list[str]) -> dict[str, Any]:
        """Write the manifest (plus attempt, files, committed_at), drop older attempts."""
        import datetime as dt

        committed = {
            **manifest,
            "attempt": self.name,
            "files": files,
            "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        write_json_atomic(join(self.table_uri, MANIFEST), committed)  # the commit point
        for d in list_dirs(self.table_uri):  # a retry's older attempts are garbage now
            if d.startswith("attempt=") and d != self.name:
                remove_tree(join(self.table_uri, d))
        return committed


def new_attempt(table_uri: str) -> Attempt:
    return Attempt(table_uri, f"attempt={new_attempt_id()}")


def once(
    uri: str,
    compute: Callable[[], T],
    *,
    load: Callable[[Any], T] = lambda v: v,
    dump: Callable[[T], Any] = lambda v: v,
    keep: Callable[[T], bool] = lambda v: True,
) -> T:
    """The one idempotency guard: the result committed at ``uri`` when a try already made it (a
    retry returns it unchanged), else ``compute()``, committed (JSON, atomically) when ``keep``
    says so (a Horovod rank other than 0 keeps nothing), and returned."""
    if exists(uri):
        return load(read_json(uri))
    value = compute()
    if keep(value):
        write_json_atomic(uri, dump(value))
    return value


def commit_parquet_table(
    table_uri: str, tables: Any, manifest_fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write pyarrow tables as ``attempt=<id>/part-NNNNN.parquet`` and commit with the manifest.

    ``tables`` is an iterable of ``pyarrow.Table`` (one part file each, written in order). The
    manifest is written last (the commit point), then older attempts of a retry are removed. Returns
    the manifest.
    """
    import pyarrow.parquet as pq

    attempt = new_attempt(table_uri)
    fs, out_path = filesystem(attempt.uri)
    fs.makedirs(out_path, exist_ok=True)
    files: list[str] = []
    rows = 0
    schema = None
    for i, table in enumerate(tables):
        name = f"part-{i:05d}.parquet"
        with fs.open(join(out_path, name), "wb") as fh:
            pq.write_table(table, fh)
        files.append(name)
        rows += table.num_rows
        schema = schema or {f.name: str(f.type) for f in table.schema}
    return attempt.commit({**(manifest_fields or {}), "rows": rows, "schema": schema or {}}, files)


def read_parquet_table(table_uri: str, columns: list[str] | None = None):  # type: ignore[no-untyped-def]
    """(pyarrow.Table, manifest) of a committed table: exactly the files its manifest lists."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = read_manifest(table_uri)
    parts = []
    for name in manifest.get("files", []):
        fs, path = filesystem(join(table_uri, manifest["attempt"], name))
        with fs.open(path, "rb") as fh:
            parts.append(pq.read_table(fh, columns=columns))
    if not parts:
        return None, manifest
    return pa.concat_tables(parts), manifest
