"""Resource profiles: what each step's pod (or local process) gets, and the platform's defaults.

The final profile of a step is ``platform default ← pipeline steps.<kind> ← customer settings
resources.<kind>`` (each layer a partial override), validated once into :class:`ResourceProfile`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlplatform_contract.steps import StepKind

_QUANTITY = re.compile(r"^(?P<num>\d+(\.\d+)?)(?P<unit>m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}

NodePool = Literal["system", "cpu", "gpu"]


def quantity_value(text: str) -> float:
    """The numeric value of a Kubernetes quantity ('500m' -> 0.5, '2Gi' -> 2147483648)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a positive Kubernetes quantity (examples: '500m', '2', '512Mi', '8Gi')"
        )
    unit = match["unit"] or ""
    return float(match["num"]) * (_BINARY.get(unit) or _DECIMAL.get(unit) or 1)


def _positive_quantity(value: str | int | float) -> str:
    text = str(value).strip()
    if quantity_value(text) <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    return text


class ResourceProfile(BaseModel):
    """Resources and scheduling of one step. Validated strictly: a typo is an error, not a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str = Field(description="CPU request and limit, a Kubernetes quantity ('2', '500m')")
    memory: str = Field(description="memory request and limit ('8Gi')")
    gpu: int = Field(0, ge=0, le=8, description="nvidia.com/gpu per pod")
    shm_size: str | None = Field(None, description="size of /dev/shm (memory-backed emptyDir)")
    tmp_size: str = Field("10Gi", description="size limit of the writable /tmp emptyDir")
    node_pool: NodePool = "cpu"
    spot: bool = Field(False, description="may run on spot capacity (must then survive a restart)")
    timeout_minutes: int = Field(60, gt=0, le=7 * 24 * 60)
    retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: int = Field(60, ge=0)
    priority_class: str = "ml-pipeline-standard"
    startup_timeout_seconds: int = Field(
        300, gt=0, description="how long a pod may wait for a node (GPU pools scale from zero)"
    )
    nodes: int = Field(
        1, ge=1, le=64, description="training nodes; more than one renders an MPIJob"
    )
    local_processes: int = Field(
        1, ge=1, le=16, description="Horovod processes in the local runtime (horovodrun --gloo)"
    )

    _check_cpu = field_validator("cpu", "memory", mode="before")(_positive_quantity)

    @field_validator("shm_size", "tmp_size", mode="before")
    @classmethod
    def _check_sizes(cls, value: str | None) -> str | None:
        return None if value is None else _positive_quantity(value)

    @model_validator(mode="after")
    def _gpu_needs_gpu_pool(self) -> ResourceProfile:
        if self.gpu and self.node_pool != "gpu":
            raise ValueError(f"gpu: {self.gpu} needs node_pool 'gpu' (got {self.node_pool!r})")
        if self.nodes > 1 and not self.gpu:
            raise ValueError("nodes > 1 (multi-node Horovod) needs gpu >= 1 per node")
        return self

    @property
    def processes_per_pod(self) -> int:
        """Horovod ranks in one pod: one per GPU, or one on a CPU pod."""
        return max(self.gpu, 1)

    @property
    def total_processes(self) -> int:
        return self.processes_per_pod * self.nodes


_STANDARD = {"priority_class": "ml-pipeline-standard", "node_pool": "cpu"}

PLATFORM_DEFAULTS: dict[StepKind, dict[str, object]] = {
    "ingest": {**_STANDARD, "cpu": "4", "memory": "16Gi", "spot": True, "timeout_minutes": 120},
    "validate": {**_STANDARD, "cpu": "2", "memory": "8Gi", "spot": True, "timeout_minutes": 60},
    "train": {
        "cpu": "8",
        "memory": "32Gi",
        "gpu": 1,
        "shm_size": "8Gi",
        "node_pool": "gpu",
        "spot": False,
        "timeout_minutes": 240,
        "retries": 3,
        "priority_class": "ml-pipeline-training",
        "startup_timeout_seconds": 900,
        "local_processes": 2,
    },
    "evaluate": {**_STANDARD, "cpu": "2", "memory": "8Gi", "spot": True, "timeout_minutes": 60},
    "score": {**_STANDARD, "cpu": "4", "memory": "16Gi", "spot": True, "timeout_minutes": 120},
    "publish": {
        **_STANDARD,
        "cpu": "1",
        "memory": "2Gi",
        "spot": False,
        "timeout_minutes": 120,
        "retries": 5,
    },
}
# The monitor step (the ingest image's Spark, on the outcome window only): smaller than ingest.
MONITOR_DEFAULTS: dict[str, object] = {
    **PLATFORM_DEFAULTS["ingest"],
    "cpu": "2",
    "memory": "8Gi",
    "timeout_minutes": 60,
}
