"""The control plane and the workload never import each other; these constants must still agree."""

from mlplatform import steps
from model_steps import contract


def test_both_sides_agree_on_the_contract() -> None:
    assert steps.STEP_KINDS == contract.STEP_NAMES
    assert steps.EXIT_SKIP_DOWNSTREAM == contract.EXIT_SKIP_DOWNSTREAM
    assert steps.EXIT_USAGE == contract.EXIT_USAGE
    assert tuple(steps.NON_RETRYABLE_EXIT_CODES) == contract.NON_RETRYABLE_EXIT_CODES
    assert steps.POD_XCOM_PATH == contract.DEFAULT_XCOM_PATH
    assert steps.ENV_XCOM_PATH == contract.ENV_XCOM_PATH
    assert steps.ENV_CONFIG == contract.ENV_CONFIG
    assert steps.ENV_PARAMS == contract.ENV_PARAMS
    assert steps.ENV_CRM_BASE_URL == contract.ENV_CRM_BASE_URL
    assert steps.ENV_CRM_API_TOKEN == contract.ENV_CRM_API_TOKEN
    assert steps.RESULT_LOG_PREFIX == contract.RESULT_LOG_PREFIX
    assert steps.ENV_IMAGE_DIGEST == contract.ENV_IMAGE_DIGEST
    assert steps.ENV_GIT_SHA == contract.ENV_GIT_SHA
    assert steps.ENV_TRY_NUMBER == contract.ENV_TRY_NUMBER
    assert contract.CUSTOMER_ID_PATTERN.pattern == steps.CUSTOMER_ID_REGEX
    assert contract.PIPELINE_NAME_PATTERN.pattern == steps.PIPELINE_NAME_REGEX
