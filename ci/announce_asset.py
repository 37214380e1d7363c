"""Post an Airflow asset event through the REST API: how CI (and a landing system) tell the
platform that something new exists, so the DAGs scheduled on that asset run.

    python ci/announce_asset.py mlops://images/manifest --extra commit=$CI_COMMIT_SHA

Needs AIRFLOW_API_URL (e.g. https://airflow.example.com) and AIRFLOW_API_TOKEN (a JWT from
``POST /auth/token``); without them it says so and exits 0, so pipelines of forks and local runs
(gitlab-ci-local) deploy without announcing. Standard library only: the CI job's image has no
extra packages. An asset Airflow does not know (no DAG consumes it yet) is an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
from typing import Any


def _call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def announce(base: str, token: str, uri: str, extra: dict[str, str]) -> dict[str, Any]:
    """The asset's id by URI, then one event on it; returns the event Airflow recorded."""
    query = urllib.parse.urlencode({"uri_pattern": uri, "limit": 100})
    found = [a for a in _call(base, token, "GET", f"/api/v2/assets?{query}")["assets"]
             if a["uri"] == uri]  # fmt: skip
    if not found:
        raise SystemExit(f"Airflow at {base} knows no asset {uri}: is a DAG scheduled on it?")
    event = {"asset_id": found[0]["id"], "extra": extra}
    return dict(_call(base, token, "POST", "/api/v2/assets/events", event))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="the asset URI, e.g. mlops://images/manifest")
    parser.add_argument("--extra", action="append", default=[], help="KEY=VALUE for the event")
    args = parser.parse_args(argv)
    base, token = os.environ.get("AIRFLOW_API_URL"), os.environ.get("AIRFLOW_API_TOKEN")
    if not base or not token:
        print(f"AIRFLOW_API_URL / AIRFLOW_API_TOKEN not set: {args.uri} not announced")
        return 0
    extra = dict(item.split("=", 1) for item in args.extra)
    event = announce(base, token, args.uri, extra)
    print(f"announced {args.uri}: event {event.get('id')} at {event.get('timestamp')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
