"""The pipeline spec a model module declares, validated with errors that name file and field."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlplatform.profiles import MONITOR_DEFAULTS, PLATFORM_DEFAULTS, ResourceProfile
from mlplatform.settings import CustomerSettings, deep_merge
from mlplatform_contract.environment import control_plane
from mlplatform_contract.steps import (
    CUSTOMER_ID_REGEX,
    MONITOR_RUNS_IN,
    MONITOR_STEP,
    PIPELINE_NAME_REGEX,
    STEP_KINDS,
    STEP_NAME_PATTERN,
    TUNING_STEPS,
    StepKind,
)
from mlplatform_contract.tasks import TASKS, TaskType

LABEL_VALUE_REGEX = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
# an importable module path, optionally :ATTRIBUTE (default MODEL), or an entry point's name
MODEL_REF_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$"


class PipelineSpecError(ValueError):
    """A model module's spec is invalid. The message lists every problem as ``file: field: why``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {source}: {p}" for p in problems)
        super().__init__(
            f"invalid pipeline spec in {source} ({len(problems)} problem(s)):\n{lines}"
        )


def _format_loc(loc: tuple[int | str, ...], customers: list[Any]) -> str:
    """``('customers', 1, 'id')`` -> ``customers[1] (acme-foods).id`` so users find the entry."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            label = f"[{item}]"
            if i > 0 and loc[i - 1] == "customers" and item < len(customers):
                entry = customers[item]
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    label += f" ({entry['id']})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<spec>"


def problems_of(
    error: ValidationError, prefix: str = "", customers: list[Any] | None = None
) -> list[str]:
    """One ``field.path: what is wrong`` line per pydantic error, ``prefix`` prepended to the path."""
    problems = []
    for err in error.errors():
        where = _format_loc(tuple(err["loc"]), customers or [])
        where = f"{prefix}.{where}" if prefix and where != "<spec>" else prefix or where
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; docs/reference.md lists the fields)"
        elif err["type"] == "literal_error":
            message = f"{message} (got {err['input']!r})"
        problems.append(f"{where}: {message}")
    return problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerSpec(_Strict):
    id: str = Field(
        pattern=CUSTOMER_ID_REGEX,
        description="reaches pod names, S3 keys and MLflow names: 3-32 chars of a-z, 0-9 and '-'",
    )
    tier: str
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _explain_id(cls, value: Any) -> Any:
        import re

        if isinstance(value, str) and not re.fullmatch(CUSTOMER_ID_REGEX, value):
            raise ValueError(
                f"customer id {value!r} is not allowed: use 3-32 characters, lowercase letters, "
                "digits and '-', starting with a letter and not ending with '-' "
                "(it becomes part of pod names, S3 keys and MLflow model names)"
            )
        return value


class ExtraStepSpec(_Strict):
    """A model's own step: the same CLI contract (``python -m model_steps <name> …``), run by the
    model package's ``steps[<name>]`` hook, placed in the DAG after another step."""

    after: str = Field(description="the step it runs after (a platform step or another extra)")
    runs_in: StepKind = Field(
        "score",
        description="the platform step whose image, service account and default resources it uses",
    )
    resources: dict[str, Any] = Field(default_factory=dict, description="resource overrides")
    description: str = ""


class PipelineSpec(_Strict):
    name: str = Field(pattern=PIPELINE_NAME_REGEX)
    model: str = Field(
        pattern=MODEL_REF_REGEX,
        description="the model package's import path (e.g. mlmodels.<name>), checked for "
        "form here and imported by the steps",
    )
    task: TaskType = Field(description="what the model predicts; its package must say the same")
    owner: str = Field(pattern=LABEL_VALUE_REGEX, description="owning team; a cost label on pods")
    description: str = Field(min_length=1)
    schedule: str | None = None
    start_date: dt.date = dt.date(2026, 1, 1)
    tags: tuple[str, ...] = ()
    steps: dict[StepKind, dict[str, Any]] = Field(
        description="the steps this pipeline runs (in platform order) with resource overrides"
    )
    extra_steps: dict[str, ExtraStepSpec] = Field(
        default_factory=dict, description="the model's own steps, by name, each after another"
    )
    defaults: dict[str, Any] = Field(default_factory=dict)
    tiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    customers: list[CustomerSpec] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _some_steps(cls, steps: dict[StepKind, dict[str, Any]]) -> dict[StepKind, dict[str, Any]]:
        if not steps:
            raise ValueError(f"at least one step is needed, from {', '.join(STEP_KINDS)}")
        return steps

    @model_validator(mode="after")
    def _extra_steps_placed(self) -> PipelineSpec:
        known = set(self.steps)
        for name, extra in self.extra_steps.items():  # declaration order: each after a known one
            if not STEP_NAME_PATTERN.fullmatch(name) or name in (
                *STEP_KINDS,
                *TUNING_STEPS,
                MONITOR_STEP,
            ):
                raise ValueError(
                    f"extra_steps.{name}: a step name is 3-40 of a-z, 0-9 and _, and not one of "
                    f"the platform's ({', '.join(STEP_KINDS + TUNING_STEPS)})"
                )
            if extra.after not in known:
                raise ValueError(
                    f"extra_steps.{name}.after: {extra.after!r} is not a step declared before it "
                    f"(known: {', '.join(sorted(known))})"
                )
            known.add(name)
        return self

    @model_validator(mode="after")
    def _customers_consistent(self) -> PipelineSpec:
        seen: set[str] = set()
        for customer in self.customers:
            if customer.id in seen:
                raise ValueError(f"customer id {customer.id!r} appears more than once")
            seen.add(customer.id)
            if customer.tier not in self.tiers:
                allowed = ", ".join(sorted(self.tiers)) or "(no tiers declared)"
                raise ValueError(
                    f"customer {customer.id!r} has tier {customer.tier!r}; declared tiers: {allowed}"
                )
        return self


@dataclass(frozen=True)
class ResolvedCustomer:
    """One customer with every layer applied: what one DAG is built from."""

    pipeline: PipelineSpec
    id: str
    tier: str
    settings: CustomerSettings
    profiles: dict[str, ResourceProfile]  # by step name: the platform's and the extra steps
    source: str = "<unknown module>"

    @property
    def dag_id(self) -> str:
        return f"{self.pipeline.name}__{self.id}"

    @property
    def schedule(self) -> str | None:
        return self.settings.schedule or self.pipeline.schedule

    @property
    def steps(self) -> list[StepKind]:
        return [kind for kind in STEP_KINDS if kind in self.pipeline.steps]

    @property
    def monitored(self) -> bool:
        """Whether the customer gets a monitoring DAG: its runs score, and monitoring is on."""
        return self.settings.monitoring.enabled and "score" in self.pipeline.steps

    @property
    def monitor_dag_id(self) -> str:
        return f"{self.dag_id}__monitor"

    def kind_of(self, step: str) -> StepKind:
        """The platform step whose image, account and defaults a step uses (itself, or runs_in)."""
        if step == MONITOR_STEP:
            return MONITOR_RUNS_IN
        extra = self.pipeline.extra_steps.get(step)
        return extra.runs_in if extra else step  # type: ignore[return-value]


def parse_pipeline(raw: dict[str, Any], source: str) -> PipelineSpec:
    """The validated spec, or every problem at once: a top-level mistake does not hide the
    customers' settings problems (they are checked on the raw layers too)."""
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        problems = problems_of(exc, customers=raw.get("customers") or [])
        raise PipelineSpecError(source, problems + _raw_settings_problems(raw, problems)) from None


def _raw_settings_problems(raw: dict[str, Any], known: list[str]) -> list[str]:
    """Settings problems of each customer, from the raw dicts (best effort, for reporting)."""
    customers, tiers = raw.get("customers"), raw.get("tiers") or {}
    defaults = raw.get("defaults") or {}
    if (
        not isinstance(customers, list)
        or not isinstance(tiers, dict)
        or not isinstance(defaults, dict)
    ):
        return []
    found: list[str] = []
    for index, customer in enumerate(customers):
        if not isinstance(customer, dict):
            continue
        tier, own = tiers.get(customer.get("tier")) or {}, customer.get("settings") or {}
        if not isinstance(tier, dict) or not isinstance(own, dict):
            continue
        where = f"customers[{index}] ({customer.get('id')}).settings"
        try:
            CustomerSettings.model_validate(deep_merge(deep_merge(defaults, tier), own))
        except ValidationError as exc:
            found += [p for p in problems_of(exc, prefix=where) if p not in known]
    return found


# The platform's shared CRM connection (and Secret crm-default): every customer may use it.
SHARED_CRM_CONNECTION = "crm_default"


def own_crm_connection(customer_id: str) -> str:
    """A customer's own CRM connection: crm_<id with - as _>, its Secret crm-<id>."""
    return "crm_" + customer_id.replace("-", "_")


def _crm_problems(settings: CustomerSettings, customer_id: str, where: str) -> list[str]:
    """crm.connection_id names the Secret the publish pod reads its token from: only the shared CRM
    or the customer's own, never another customer's Secret or any other Secret of the namespace."""
    named = settings.crm.connection_id
    allowed = (SHARED_CRM_CONNECTION, own_crm_connection(customer_id))
    if named in allowed:
        return []
    return [
        f"{where}.crm.connection_id: {named!r} is not this customer's CRM connection (it would "
        f"read the Secret {named.replace('_', '-')!r}); use {allowed[0]!r} (the platform's CRM) or "
        f"{allowed[1]!r} (this customer's own, Secret {allowed[1].replace('_', '-')!r})"
    ]


def _task_problems(settings: CustomerSettings, task: str, where: str) -> list[str]:
    """The gate may only name the task's metrics (a regression has no roc_auc)."""
    info = TASKS[task]
    named = [("gate", settings.gate.metric)] if settings.gate.metric else []
    named += [("gate", m) for m in settings.gate.thresholds or {}]
    if settings.tuning.objective:  # the trials' objective is measured like the gate's metrics
        named.append(("tuning.objective", settings.tuning.objective))
    return [
        f"{where}.{field}: {m!r} is not a {task} metric (allowed: {', '.join(info.metrics)})"
        for field, m in named
        if m not in info.metrics
    ]


TUNING_ENV = "MLOPS_TUNING"


def platform_layer() -> dict[str, Any]:
    """The platform's own settings layer, below a module's ``defaults``: ``MLOPS_TUNING`` (JSON of a
    partial ``tuning`` section, read at parse time like MLOPS_RUNTIME) turns tuning on for every
    module that does not say otherwise, e.g. ``make run TUNE=1``."""
    import json

    raw = control_plane().tuning
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PipelineSpecError(TUNING_ENV, [f"not JSON ({exc})"]) from None
    if not isinstance(value, dict):
        raise PipelineSpecError(TUNING_ENV, ["must be a JSON object (a partial tuning section)"])
    return {"tuning": value}


def _profile(
    layers: list[dict[str, Any]], where: str, problems: list[str]
) -> ResourceProfile | None:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return ResourceProfile.model_validate(merged)
    except ValidationError as exc:
        problems += problems_of(exc, prefix=where)
        return None


def _base_profiles(spec: PipelineSpec, source: str) -> dict[str, ResourceProfile]:
    """The pipeline's step profiles, validated once (an error is reported once, not per customer)."""
    problems: list[str] = []
    base: dict[str, ResourceProfile] = {}
    for kind, overrides in spec.steps.items():
        profile = _profile([PLATFORM_DEFAULTS[kind], overrides], f"steps.{kind}", problems)
        if profile is not None:
            base[kind] = profile
    for name, extra in spec.extra_steps.items():
        where = f"extra_steps.{name}.resources"
        profile = _profile([PLATFORM_DEFAULTS[extra.runs_in], extra.resources], where, problems)
        if profile is not None:
            base[name] = profile
    base[MONITOR_STEP] = ResourceProfile.model_validate(MONITOR_DEFAULTS)
    if problems:
        raise PipelineSpecError(source, problems)
    return base


def _customer_profiles(
    spec: PipelineSpec, settings: CustomerSettings, base: dict[str, ResourceProfile],
    where: str, problems: list[str],
) -> dict[str, ResourceProfile]:  # fmt: skip
    """The base profiles with the customer's resource overrides, re-validated where overridden."""
    profiles = dict(base)
    for kind, overrides in settings.resources.items():
        extra = spec.extra_steps.get(kind)
        if kind == MONITOR_STEP:
            layers = [MONITOR_DEFAULTS, overrides]
        elif kind not in spec.steps and extra is None:
            problems.append(f"{where}.resources.{kind}: the pipeline has no {kind} step")
            continue
        elif extra is not None:
            layers = [PLATFORM_DEFAULTS[extra.runs_in], extra.resources, overrides]
        else:
            layers = [PLATFORM_DEFAULTS[kind], spec.steps[kind], overrides]  # type: ignore[index]
        profile = _profile(layers, f"{where}.resources.{kind}", problems)
        if profile is not None:
            profiles[kind] = profile
    return profiles


def _customer_settings(
    spec: PipelineSpec, customer: Any, where: str, problems: list[str]
) -> CustomerSettings | None:
    """The customer's merged settings (platform <- defaults <- tier <- its own), or None with the
    problems recorded."""
    layered = deep_merge(
        deep_merge(deep_merge(platform_layer(), spec.defaults), spec.tiers[customer.tier]),
        customer.settings,
    )
    try:
        settings = CustomerSettings.model_validate(layered)
    except ValidationError as exc:
        problems += [
            f"{p} (merged from defaults, tier {customer.tier!r} and the customer)"
            for p in problems_of(exc, prefix=where)
        ]
        return None
    problems += [p for p in _task_problems(settings, spec.task, where) if p not in problems]
    problems += _crm_problems(settings, customer.id, where)
    if settings.tuning.enabled and "train" not in spec.steps:
        problems.append(f"{where}.tuning.enabled: the pipeline has no train step to tune")
    return settings


def resolve_customers(spec: PipelineSpec, source: str) -> list[ResolvedCustomer]:
    """Apply the layers for every enabled customer; collect every problem before raising."""
    base = _base_profiles(spec, source)
    problems: list[str] = []
    resolved: list[ResolvedCustomer] = []
    for index, customer in enumerate(spec.customers):
        if not customer.enabled:
            continue
        where = f"customers[{index}] ({customer.id}).settings"
        settings = _customer_settings(spec, customer, where, problems)
        if settings is None:
            continue
        profiles = _customer_profiles(spec, settings, base, where, problems)
        resolved.append(
            ResolvedCustomer(spec, customer.id, customer.tier, settings, profiles, source)
        )
    if problems:
        raise PipelineSpecError(source, problems)
    return resolved
