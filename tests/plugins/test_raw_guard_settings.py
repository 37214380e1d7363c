"""The raw_guards settings section: parse-time validation in the control plane (the one schema the
workload parses too, mlplatform_contract.settings)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlplatform.settings import CustomerSettings, RawGuardSettings


def test_the_workload_reads_the_same_defaults():
    from model_steps.raw_reader import DEFAULT_GUARDS

    assert RawGuardSettings().model_dump() == DEFAULT_GUARDS


def test_raw_guards_reach_every_step():
    config = CustomerSettings.model_validate(
        {"raw_guards": {"max_orphan_share": 0.05, "volume": {"warn_above": 4}}}
    ).step_config()
    assert config["raw_guards"]["max_orphan_share"] == 0.05
    assert config["raw_guards"]["volume"]["warn_above"] == 4
    assert config["raw_guards"]["volume"]["error_above"] == 10.0


@pytest.mark.parametrize(
    "bad",
    [
        {"max_orphan_share": 2},
        {"max_examples": 0},
        {"volume": {"warn_below": 0.01}},  # below error_below
        {"volume": {"warn_above": 20}},  # above error_above
        {"volume": {"min_history_drops": 40}},  # more than history_drops
        {"volume": {"error_above": 0.5}},
        {"orphans": 0.1},  # unknown field
    ],
)
def test_bad_raw_guard_settings_are_refused_at_parse_time(bad):
    with pytest.raises(ValidationError):
        RawGuardSettings.model_validate(bad)
