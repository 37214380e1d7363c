"""Customer settings: the schema lives in :mod:`mlplatform_contract.settings`, shared with the
workload (one definition for both sides); this module keeps the control plane's import path."""

from mlplatform_contract.settings import (
    CrmSettings,
    CustomerSettings,
    DataSettings,
    GateSettings,
    RawGuardSettings,
    ScoringSettings,
    SparkSettings,
    TrainingSettings,
    ValidationSettings,
    VolumeGuardSettings,
    deep_merge,
)

__all__ = [
    "CrmSettings",
    "CustomerSettings",
    "DataSettings",
    "GateSettings",
    "RawGuardSettings",
    "ScoringSettings",
    "SparkSettings",
    "TrainingSettings",
    "ValidationSettings",
    "VolumeGuardSettings",
    "deep_merge",
]
