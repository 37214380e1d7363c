"""The lake's zones: where each one lives (bucket, key prefix) and which step kind may write it.

One definition, in ``lake_zones.json`` beside this module, read by the step code (this module) and
by Terraform (``terraform/modules/step_policy`` turns it into each step kind's IAM policy), so a
zone's name, its prefix and its writer cannot drift apart. A zone is written by exactly the kinds
listed; nothing a later step trusts (the gate's ``decision.json`` and the champion's profile in
``evaluation``, the drift references in ``reference``) can be written by an earlier step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DEFINITION = Path(__file__).with_name("lake_zones.json")


@dataclass(frozen=True)
class Zone:
    name: str
    bucket: str  # the platform bucket's key in Terraform's local.buckets: "lake" or "scores"
    prefix: str  # key prefix inside the bucket, ending in "/"
    writers: tuple[str, ...]  # step kinds whose role may write it


@cache
def _definition() -> dict[str, Any]:
    return json.loads(DEFINITION.read_text())


@cache
def zones() -> dict[str, Zone]:
    """Every zone of the lake, by name."""
    return {
        name: Zone(name, z["bucket"], z["prefix"], tuple(z["writers"]))
        for name, z in _definition()["zones"].items()
    }


def zone(name: str) -> str:
    """A zone's name, checked against the definition (an unknown zone has no IAM grant)."""
    if name not in zones():
        raise KeyError(f"lake zone {name!r} is not in {DEFINITION.name}: {sorted(zones())}")
    return name


def roots() -> dict[str, str]:
    """The key prefix of each platform URI in its bucket: LAKE_URI's ("lake"), SCORES_URI's."""
    return dict(_definition()["roots"])


def readers() -> dict[str, tuple[str, ...]]:
    """The buckets each step kind reads."""
    return {kind: tuple(b) for kind, b in _definition()["readers"].items()}


def written_by(kind: str) -> list[Zone]:
    """The zones one step kind's role may write."""
    return [z for z in zones().values() if kind in z.writers]


RAW = zone("raw")
FEATURES = zone("features")
POPULATION = zone("population")
EVALUATION = zone("evaluation")
REFERENCE = zone("reference")
