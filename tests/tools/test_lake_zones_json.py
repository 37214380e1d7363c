"""plugins/mlplatform_contract/lake_zones.json (what Terraform's step_policy reads) is what the lake
layout says (tools/lake_zones_json.py), and the layout's IAM table names every zone it has."""

from __future__ import annotations

import json
import sys

from conftest import REPO

from mlplatform_contract import layout

sys.path.insert(0, str(REPO / "tools"))
import lake_zones_json


def test_the_committed_json_is_generated_from_the_layout() -> None:
    assert lake_zones_json.main(["--check"]) == 0, "run: python tools/lake_zones_json.py"
    definition = json.loads(lake_zones_json.OUT.read_text())
    assert definition["zones"]["evaluation"]["writers"] == ["evaluate"]
    assert definition["zones"]["scores"] == {
        "bucket": "scores",
        "prefix": "scores/",
        "writers": ["score"],
        "written_by": "score: the committed scores (SCORES_URI)",
    }
    assert definition["zones"]["features"]["prefix"] == "lake/features/"
    assert definition["readers"]["publish"] == ["lake", "scores"]


def test_every_zone_of_the_layout_has_an_iam_entry() -> None:
    named = {*layout.RUN_ZONES, layout.RAW, layout.REFERENCE, layout.REPORTS}
    assert set(layout.ZONES) == named
    assert layout.known_zone("reports") == "reports"


def test_a_stale_file_fails_the_check(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "lake_zones.json"
    stale.write_text(lake_zones_json.render().replace('"validate"]', '"validate", "train"]', 1))
    monkeypatch.setattr(lake_zones_json, "OUT", stale)
    assert lake_zones_json.main(["--check"]) == 1
    assert lake_zones_json.main([]) == 0
    assert lake_zones_json.main(["--check"]) == 0
