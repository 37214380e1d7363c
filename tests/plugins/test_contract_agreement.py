"""The control plane and the workload never import each other; these constants must still agree."""

from mlplatform import steps
from model_steps import contract


def test_both_sides_agree_on_the_contract() -> None:
    assert steps.STEP_KINDS == contract.STEP_NAMES
    assert steps.MONITOR_STEP == contract.MONITOR_STEP
    assert steps.TUNING_STEPS == contract.TUNING_STEPS
    assert steps.ENV_TRIAL == contract.ENV_TRIAL
    assert steps.EXIT_SKIP_DOWNSTREAM == contract.EXIT_SKIP_DOWNSTREAM
    assert steps.EXIT_USAGE == contract.EXIT_USAGE
    assert steps.EXIT_CHECK_FAILED == contract.EXIT_CHECK_FAILED
    assert tuple(steps.NON_RETRYABLE_EXIT_CODES) == contract.NON_RETRYABLE_EXIT_CODES
    assert steps.POD_XCOM_PATH == contract.DEFAULT_XCOM_PATH
    assert steps.ENV_XCOM_PATH == contract.ENV_XCOM_PATH
    assert steps.ENV_CONFIG == contract.ENV_CONFIG
    assert steps.ENV_PARAMS == contract.ENV_PARAMS
    assert steps.ENV_MODEL == contract.ENV_MODEL
    assert steps.ENV_CRM_BASE_URL == contract.ENV_CRM_BASE_URL
    assert steps.ENV_CRM_API_TOKEN == contract.ENV_CRM_API_TOKEN
    assert steps.RESULT_LOG_PREFIX == contract.RESULT_LOG_PREFIX
    assert steps.ENV_IMAGE_DIGEST == contract.ENV_IMAGE_DIGEST
    assert steps.ENV_GIT_SHA == contract.ENV_GIT_SHA
    assert steps.ENV_TRY_NUMBER == contract.ENV_TRY_NUMBER
    assert contract.CUSTOMER_ID_PATTERN.pattern == steps.CUSTOMER_ID_REGEX
    assert contract.PIPELINE_NAME_PATTERN.pattern == steps.PIPELINE_NAME_REGEX


def test_the_workload_parses_what_the_control_plane_validated(monkeypatch) -> None:
    """One settings schema: every example customer's STEP_CONFIG, as the control plane renders it,
    parses on the workload side into the same values (no key dropped, no default that differs)."""
    import runpy
    from pathlib import Path

    import mlplatform
    from mlplatform.spec import parse_pipeline, resolve_customers
    from model_steps.model_loader import parse_platform_settings

    specs: list = []
    monkeypatch.setattr(mlplatform, "register_pipeline", lambda g, spec: specs.append(spec))
    modules = sorted((Path(__file__).resolve().parents[2] / "dags").glob("*.py"))
    for module in modules:
        runpy.run_path(str(module))
    assert len(specs) == len(modules) >= 2
    for spec in specs:
        for customer in resolve_customers(parse_pipeline(spec, "dags/x.py"), "dags/x.py"):
            sent = customer.settings.step_config()
            parsed = parse_platform_settings(sent)
            assert parsed.model_dump(mode="json", exclude={"schedule", "resources"}) == sent
