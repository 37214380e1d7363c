"""``python -m model_steps <step> ...``: parse the contract's arguments, run the step, report.

The exit code is the whole interface to the runtime: 0 ok, 99 skip downstream, 2 bad invocation,
anything else a failure. The JSON result goes to the XCom file in every case where the step got far
enough to produce one, so a skipped gate still tells the UI why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from mlplatform_contract.environment import EnvironmentError_, StepEnvironment
from model_steps import metrics, startup
from model_steps.contract import (
    CUSTOMER_ID_PATTERN,
    ENV_CONFIG,
    ENV_PARAMS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIP_DOWNSTREAM,
    EXIT_USAGE,
    PIPELINE_NAME_PATTERN,
    PLATFORM_STEPS,
    RESULT_LOG_PREFIX,
    STEP_NAME_PATTERN,
    TUNING_STEPS,
    SkipDownstream,
    StepContext,
    StepError,
    UsageError,
    load_json_env,
    write_result,
)

log = logging.getLogger("model_steps")
# the last log line of every step: how it ended, and its time split into start-up and work
_ENDINGS = {EXIT_OK: "done", EXIT_SKIP_DOWNSTREAM: "skipped downstream"}


def _pattern_arg(pattern: Any, what: str):  # type: ignore[no-untyped-def]
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise argparse.ArgumentTypeError(f"{what} {value!r} does not match {pattern.pattern}")
        return value

    return check


def _date_arg(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"data date {value!r} is not YYYY-MM-DD") from None


def build_parser(extra: str | None = None) -> argparse.ArgumentParser:
    """The contract's parser; ``extra`` adds a model's own step name (``Model.steps``)."""
    parser = argparse.ArgumentParser(prog="python -m model_steps", description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    for name in (*PLATFORM_STEPS, *TUNING_STEPS, *([extra] if extra else [])):
        p = sub.add_parser(name, help=f"run the {name} step")
        p.add_argument(
            "--pipeline", required=True, type=_pattern_arg(PIPELINE_NAME_PATTERN, "pipeline")
        )
        p.add_argument(
            "--customer", required=True, type=_pattern_arg(CUSTOMER_ID_PATTERN, "customer id")
        )
        p.add_argument("--run-id", required=True)
        p.add_argument("--data-date", required=True, type=_date_arg)
    return parser


def _process_env() -> StepEnvironment:
    """The step process's environment; an invalid one is reported by the step (exit 2), so here
    it falls back to the defaults (rank 0, INFO, the pod's XCom path)."""
    try:
        return StepEnvironment.of()
    except EnvironmentError_:
        return StepEnvironment.of({})


def _is_primary_rank() -> bool:
    """Under horovodrun every rank runs this CLI; only rank 0 speaks for the step."""
    return _process_env().rank == 0


def _report(result: Any, xcom_path: str) -> None:
    """The result as JSON (a step's result model dumped; a model's own step returns a dict)."""
    if not _is_primary_rank():
        return
    payload = result if isinstance(result, dict) else result.to_xcom()
    write_result(payload, xcom_path)
    print(RESULT_LOG_PREFIX + json.dumps(payload, default=str, sort_keys=True), flush=True)


def _step_body(step: str):  # type: ignore[no-untyped-def]
    if step in TUNING_STEPS:  # one module for the stage (it needs the train extra)
        from model_steps.steps import tuning

        return getattr(tuning, step)
    if step not in PLATFORM_STEPS:
        return _model_step(step)
    module_name = f"model_steps.steps.{step}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise StepError(f"step {step!r} is not part of this build of model_steps") from None
        raise StepError(
            f"step {step!r} needs {exc.name!r}, which is not installed here: install the "
            f"image's extra (pip install 'model-steps[{step}]')"
        ) from None
    return module.run


def _model_step(step: str):  # type: ignore[no-untyped-def]
    """A model's own step: its ``steps[<name>]`` hook, with the step and model contexts."""

    def run(ctx: StepContext) -> dict[str, Any]:
        from model_steps import model_loader

        loaded = model_loader.load(ctx)
        hook = loaded.model.steps.get(step)
        if hook is None:
            raise UsageError(
                f"model {loaded.model.name} has no step {step!r} (its steps: "
                f"{', '.join(sorted(loaded.model.steps)) or 'none'}; the DAG module's "
                "extra_steps must name a step of Model.steps)"
            )
        return hook(ctx, model_loader.model_context(ctx, loaded))

    return run


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=_process_env().log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # as a command (not called in-process by a test), the interpreter's own start counts too
    interpreter_s = startup.since_process_start() if argv is None else None
    startup.watch_imports()
    argv = list(sys.argv[1:] if argv is None else argv)
    known = (*PLATFORM_STEPS, *TUNING_STEPS)
    extra = (
        argv[0] if argv and argv[0] not in known and STEP_NAME_PATTERN.fullmatch(argv[0]) else None
    )
    try:
        args = build_parser(extra).parse_args(argv)
    except SystemExit as exc:  # argparse already printed the reason
        return EXIT_USAGE if exc.code else EXIT_OK
    xcom_path = _process_env().xcom_path
    started = time.monotonic()
    code, result = EXIT_FAILED, None
    try:
        code, result = _run(args, xcom_path, started)
    finally:  # also when the step crashed (exit 1, no result): the gateway hears of every ending
        took = startup.describe(time.monotonic() - started, interpreter_s)
        log.info("step %s %s in %s", args.step, _ENDINGS.get(code, "failed"), took)
        if _is_primary_rank():
            key = metrics.grouping_key(args.pipeline, args.customer, args.step)
            metrics.push(os.environ, key, code, time.monotonic() - started, result,
                         replace=code in _ENDINGS)  # fmt: skip
    return code


def _run(args: argparse.Namespace, xcom_path: str, started: float) -> tuple[int, Any]:
    """The step itself: its exit code and its result (a failed step's partial result, or None:
    pushed as metrics, never reported as XCom)."""
    try:
        ctx = StepContext(
            step=args.step,
            pipeline=args.pipeline,
            customer=args.customer,
            run_id=args.run_id,
            data_date=args.data_date,
            config=load_json_env(dict(os.environ), ENV_CONFIG),
            params=load_json_env(dict(os.environ), ENV_PARAMS),
            env=dict(os.environ),
        )
        log.info(
            "step %s starting: pipeline=%s customer=%s run=%s data_date=%s",
            ctx.step,
            ctx.pipeline,
            ctx.customer,
            ctx.run_id,
            ctx.data_date,
        )
        result = _step_body(ctx.step)(ctx)
    except SkipDownstream as skip:
        _report(skip.result, xcom_path)
        log.warning("step %s asks to skip downstream: %s", args.step, skip)
        return EXIT_SKIP_DOWNSTREAM, skip.result
    except StepError as exc:
        log.error("step %s failed: %s", args.step, exc)
        return exc.exit_code, exc.result
    _report(result, xcom_path)
    return EXIT_OK, result
