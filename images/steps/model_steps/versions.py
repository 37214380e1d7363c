"""``python -m model_steps.versions --pipeline P --customer C [--json]``: a customer's model versions.

For an operator deciding what to roll back to: every registered version of ``<pipeline>-<customer>``
with its gate verdict (``mlops.gate_verdict``: only ``passed`` ones may be pinned or made
champion), its digest, data date and run key, which one is the champion, then the champion
history (model_steps.champion: every move with its actor and reason), oldest first.

It reads only, and runs with a read identity of that customer: the scorer's or the monitor's
(``MLFLOW_TRACKING_USERNAME`` = ``scorer@<customer>`` or ``monitor@<customer>`` and its password;
docs/registry-access.md), never the admin's: against a tracking server with auth (an http(s) URI)
any other username is refused (exit 2). The environment is a step's: ``MLFLOW_TRACKING_URI`` and
``LAKE_URI`` (the history lives in the lake). The rollback itself is a training DAG run
(docs/model-lifecycle.md); the last line prints its ``airflow dags trigger`` command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from mlplatform_contract.layout import CustomerLayout
from mlplatform_contract.registry_access import ENV_USERNAME, username
from model_steps.champion import VERDICT_TAG, ChampionEvent, history
from model_steps.contract import (
    CUSTOMER_ID_PATTERN,
    ENV_LAKE_URI,
    ENV_MLFLOW_URI,
    PIPELINE_NAME_PATTERN,
    UsageError,
)
from model_steps.model_store import DIGEST_TAG
from model_steps.tracking import champion_version, connect, registered_model_name

READ_ROLES = ("scorer", "monitor")


class VersionRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    verdict: str  # passed | refused | none (never judged)
    digest: str
    data_date: str
    run_key: str
    registered_at: str
    champion: bool


def check_identity(customer: str, tracking_uri: str, env: dict[str, str]) -> None:
    """Only a read identity of ``customer`` against a server with auth: never the admin's."""
    if not tracking_uri.startswith(("http://", "https://")):
        return  # a local store (sqlite, files) has no identities
    allowed = [username(role, customer) for role in READ_ROLES]
    if env.get(ENV_USERNAME) not in allowed:
        raise UsageError(
            f"{ENV_USERNAME}={env.get(ENV_USERNAME)!r}: list versions as a read identity of "
            f"{customer} ({' or '.join(allowed)}), not the admin's (docs/registry-access.md)"
        )


def rows(client: Any, name: str) -> list[VersionRow]:
    """Every version of ``name``, newest first, with its verdict and whether it is champion."""
    current = champion_version(name)
    champion = None if current is None else str(current.version)
    found = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    return [
        VersionRow(
            version=str(v.version),
            verdict=v.tags.get(VERDICT_TAG, "none"),
            digest=v.tags.get(DIGEST_TAG, ""),
            data_date=v.tags.get("data_date", ""),
            run_key=v.tags.get("run_key", ""),
            champion=str(v.version) == champion,
            registered_at=_utc(v.creation_timestamp),
        )
        for v in found
    ]


def _utc(millis: int) -> str:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds")


def render(
    dag_id: str, name: str, versions: Sequence[VersionRow], events: Sequence[ChampionEvent]
) -> str:
    """The listing as text: the versions table, the history, the rollback command."""
    lines = [f"{name}: {len(versions)} version(s)", "", "  version  verdict  data date   digest"
             "        run key"]  # fmt: skip
    for r in versions:
        mark = "*" if r.champion else " "
        lines.append(f"{mark} v{r.version:<7} {r.verdict:<8} {r.data_date or '?':<11} "
                     f"{r.digest[:12]:<13} {r.run_key}")  # fmt: skip
    lines += ["", "* = champion", "", "champion history (oldest first):"]
    for e in events:
        moved = f"v{e.from_version} -> v{e.to_version}" if e.from_version else f"-> v{e.to_version}"
        lines.append(
            f"  {e.at:%Y-%m-%d %H:%M} {moved:<14} {e.actor:<9} run {e.run_key}: {e.reason}"
        )
    if not events:
        lines.append("  (no move yet)")
    passed = [r.version for r in versions if r.verdict == "passed" and not r.champion]
    if passed:
        lines += ["", "roll back (docs/model-lifecycle.md):", f"  airflow dags trigger {dag_id} "
                  f"--conf '{{\"model_version\": \"{passed[0]}\", \"make_champion\": true, "
                  "\"reason\": \"why\"}'"]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_steps.versions", description=__doc__)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--customer", required=True)
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        return _list(args, dict(os.environ))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _list(args: argparse.Namespace, env: dict[str, str]) -> int:
    import mlflow

    if not (PIPELINE_NAME_PATTERN.fullmatch(args.pipeline) and
            CUSTOMER_ID_PATTERN.fullmatch(args.customer)):  # fmt: skip
        raise UsageError(f"not a pipeline and customer id: {args.pipeline!r} {args.customer!r}")
    uri, lake_uri = env.get(ENV_MLFLOW_URI, ""), env.get(ENV_LAKE_URI, "")
    if not (uri and lake_uri):
        raise UsageError(f"set {ENV_MLFLOW_URI} and {ENV_LAKE_URI} (a step's environment)")
    check_identity(args.customer, uri, env)
    connect(uri)
    name = registered_model_name(args.pipeline, args.customer)
    versions = rows(mlflow.MlflowClient(), name)
    events = history(CustomerLayout(lake_uri, args.pipeline, args.customer))
    if args.json:
        print(json.dumps({"registered_model": name,
                          "versions": [r.model_dump() for r in versions],
                          "history": [e.model_dump(mode="json") for e in events]}, indent=1))  # fmt: skip
    else:
        print(render(f"{args.pipeline}__{args.customer}", name, versions, events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
