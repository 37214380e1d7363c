"""The embedded platform: the one definition of what a local Airflow and its steps run against.

``make run`` (scripts/run_example.py), ``make airflow`` (scripts/airflow_local.py) and the tests all
go through :func:`embedded_platform`:

* the embedded services (``embedded.services``: a local S3 endpoint and an MLflow server), started,
  or reused when a running set already answers in the state folder (then left running on exit);
* the local CRM receiver (``embedded.crm_receiver``), reached through the Airflow connection
  ``crm_default`` (``AIRFLOW_CONN_CRM_DEFAULT``);
* a Pushgateway for the steps' metrics (``embedded.pushgateway``, ``MLOPS_PUSHGATEWAY_URL``) where
  its binary is installed (``make monitoring-tools``);
* the example data (``mlmodels.restaurant_chain.datagen``, the example tenant's source package)
  for every customer whose raw zone is still empty;
* :attr:`Platform.env`, the platform settings every Airflow component and so every step gets
  (``LAKE_URI``, ``MLFLOW_TRACKING_URI``, the S3 endpoint, ``SCORES_URI``, the CRM connection),
  plus :func:`airflow_env`, the Airflow settings both scripts share;
* teardown in reverse order, also when the caller is interrupted.

Stdlib only, like ``embedded.services``: the control plane's venv runs it, and the workload's
programs (moto_server, mlflow, the receiver, datagen) are started from ``.venv-steps``.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedded import services
from embedded.pushgateway import pushgateway

REPO = Path(__file__).resolve().parents[1]
STEPS_PY = REPO / ".venv-steps" / "bin" / "python"
CP_BIN = REPO / ".venv" / "bin"
SCORES_BUCKET = "mlops-scores"
CRM_TOKEN = "local-crm-token"
CRM_CONNECTION_ENV = "AIRFLOW_CONN_CRM_DEFAULT"
PUSHGATEWAY_ENV = "MLOPS_PUSHGATEWAY_URL"  # model_steps.metrics.ENV_PUSHGATEWAY_URL
NOTIFY_FILE_ENV = "MLOPS_NOTIFY_FILE"  # mlplatform.notify.ENV_NOTIFY_FILE
ENV_REGISTRY_CREDENTIALS = "MLOPS_REGISTRY_CREDENTIALS"  # mlplatform_contract.registry_access
# the example data's last drop day (restaurant_chain.datagen.DEFAULT_DATA_DATE): the data date to run with
DATA_DATE = "2026-06-29"
DEFAULT_SIZE = "small"
# the example tenant's raw-data generator (a source package beside the models, models/restaurant_chain)
EXAMPLE_DATA = "mlmodels.restaurant_chain.datagen"
# Variables of the caller's interpreter that must not reach the other venv's programs.
_INTERPRETER_ONLY = ("VIRTUAL_ENV", "PYTHONHOME")


class PlatformError(RuntimeError):
    """The embedded platform could not be brought up; the message says which part and why."""


@dataclass
class Platform:
    """A running embedded platform: where things are, and the environment that reaches them."""

    root: Path
    lake: Path
    services: dict[str, Any]
    crm_url: str
    reused_services: bool
    generated: list[str] = field(default_factory=list)
    # the steps' metrics go here (embedded/pushgateway.py); None where no Pushgateway is installed
    pushgateway_url: str | None = None
    # each registry identity's password (model_steps.registry_admin); the local runtime hands a
    # step only its own role's entry
    registry_identities: Path | None = None

    @property
    def notify_file(self) -> Path:
        """Where the local notifier (mlplatform.notify) appends its notifications, one JSON a line."""
        return self.root / "notifications.jsonl"

    @property
    def env(self) -> dict[str, str]:
        """The platform settings of the step contract, as the local runtime passes them on."""
        crm = urllib.parse.urlsplit(self.crm_url)
        return {
            **self.services["env"],
            "LAKE_URI": self.lake.as_uri(),
            "SCORES_URI": f"s3://{SCORES_BUCKET}",
            CRM_CONNECTION_ENV: f"http://:{CRM_TOKEN}@{crm.netloc}",
            "MLOPS_RUNTIME": "local",
            NOTIFY_FILE_ENV: str(self.notify_file),
            **(
                {ENV_REGISTRY_CREDENTIALS: str(self.registry_identities)}
                if self.registry_identities
                else {}
            ),
            **({PUSHGATEWAY_ENV: self.pushgateway_url} if self.pushgateway_url else {}),
        }


def airflow_env(dags_folder: Path = REPO / "dags") -> dict[str, str]:
    """Airflow settings every component needs here. ``PATH`` starts with the control plane's venv
    because ``airflow standalone`` starts its scheduler, DAG processor, API server and triggerer as
    ``airflow`` from ``PATH``."""
    return {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO / "plugins"),
        "MLOPS_RUNTIME": "local",
        "PATH": os.pathsep.join([str(CP_BIN), os.environ.get("PATH", "")]),
    }


def base_env() -> dict[str, str]:
    """The caller's environment without its interpreter's own variables."""
    return {k: v for k, v in os.environ.items() if k not in _INTERPRETER_ONLY}


def _steps_python() -> str:
    if not STEPS_PY.exists():
        raise PlatformError(f"{STEPS_PY} does not exist: run `make setup` first")
    return str(STEPS_PY)


@contextmanager
def _services(
    state: Path, env: dict[str, str], log: Callable[[str], None]
) -> Iterator[tuple[dict[str, Any], bool]]:
    """Reuse the services of ``state`` when they answer, else start them (and stop them on exit).

    A fresh start keeps the MLflow registry left in ``state`` only with the S3 objects saved beside
    it (``state/s3``, which the endpoint loads back): without them a champion recorded there could
    no longer be loaded."""
    running = _running_services(state)
    if running is not None:
        log(f"reusing the embedded services of {state} (left running on exit)")
        services.create_bucket(running["s3_endpoint"], SCORES_BUCKET)
        yield running, True
        return
    if not (state / services.S3_DIR).is_dir():
        (state / "mlflow.db").unlink(missing_ok=True)
    command = [_steps_python(), "-m", "embedded.services", "up", "--state", str(state),
               "--bucket", SCORES_BUCKET]  # fmt: skip
    up = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    if up.returncode != 0:
        raise PlatformError(f"embedded services did not start:\n{up.stdout}{up.stderr}")
    try:
        yield json.loads((state / services.STATE_FILE).read_text()), False
    finally:
        services.down(state)


def _running_services(state: Path) -> dict[str, Any] | None:
    path = state / services.STATE_FILE
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    healthy = all(
        info.get(key) and services._http_ok(url)
        for key, url in (
            ("tracking_uri", f"{info.get('tracking_uri')}/health"),
            ("s3_endpoint", f"{info.get('s3_endpoint')}/"),
        )
    )
    return info if healthy and "env" in info else None


@contextmanager
def crm_receiver(root: Path, env: dict[str, str]) -> Iterator[str]:
    """The local CRM stand-in on a free loopback port, its records in ``root/crm.sqlite``."""
    log_path = root / "crm_receiver.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [_steps_python(), "-m", "embedded.crm_receiver", "--db", str(root / "crm.sqlite"),
             "--port", "0", "--token", CRM_TOKEN],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "listening on" not in line:
                raise PlatformError(f"the CRM receiver did not start (see {log_path})")
            yield line.split("listening on ", 1)[1].split()[0]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def has_example_data(lake: Path, customer: str) -> bool:
    """Datagen writes ``raw/customer=<id>/_datagen.json`` last: its presence means a whole drop."""
    return (lake / "raw" / f"customer={customer}" / "_datagen.json").exists()


def ensure_example_data(
    lake: Path, customers: Sequence[str], env: dict[str, str], size: str = DEFAULT_SIZE
) -> list[str]:
    """Generate the example raw zone for each customer that has none; returns those generated.

    Each customer gets its own example data: seed 7 + its index in ``customers``."""
    generated = []
    for index, customer in enumerate(customers):
        if has_example_data(lake, customer):
            continue
        command = [_steps_python(), "-m", EXAMPLE_DATA, "--customer", customer,
                   "--lake", lake.as_uri(), "--size", size, "--seed", str(7 + index)]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PlatformError(f"example data for {customer} failed:\n{done.stderr[-3000:]}")
        generated.append(customer)
    return generated


def land_outcomes(
    lake: Path, customers: Sequence[str], env: dict[str, str], days: int, size: str = DEFAULT_SIZE
) -> dict[str, dict[str, Any]]:
    """What happened in the ``days`` after the example data date, for each customer (the same
    seed as its example data, so the same entities), with the treated arms of the campaigns publish
    recorded: the outcome window the monitoring DAGs measure."""
    landed = {}
    for index, customer in enumerate(customers):
        command = [_steps_python(), "-m", EXAMPLE_DATA, "--customer", customer,
                   "--lake", lake.as_uri(), "--size", size, "--seed", str(7 + index),
                   "--outcome-days", str(days), "--campaigns"]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PlatformError(f"outcomes for {customer} failed:\n{done.stderr[-3000:]}")
        landed[customer] = json.loads(done.stdout)
    return landed


_PARSE_DAG_IDS = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
found = set()
for module in sys.argv[2:]:
    names = runpy.run_path(module)
    found.update((k.split("__")[0], k.split("__")[1]) for k in names
                 if "__" in k and not k.startswith("_"))
print(json.dumps(sorted(found)))
"""


def example_pipelines(dags_folder: Path = REPO / "dags") -> list[tuple[str, str]]:
    """Every (pipeline, customer) of every DAG module (DAG ids are ``<pipeline>__<customer>``,
    and ``<pipeline>__<customer>__monitor``). The modules are parsed by the control plane's venv
    (Airflow, plugins/), in a process of its own, whichever venv calls this."""
    modules = [str(m) for m in sorted(dags_folder.glob("*.py"))]
    command = [str(CP_BIN / "python"), "-c", _PARSE_DAG_IDS, str(REPO / "plugins"), *modules]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO,
                          env={**base_env(), "PYTHONPATH": str(REPO / "plugins")})  # fmt: skip
    if done.returncode != 0:
        raise PlatformError(
            f"parsing the DAG modules of {dags_folder} failed:\n{done.stderr[-3000:]}"
        )
    return [tuple(pair) for pair in json.loads(done.stdout.strip().splitlines()[-1])]


def grant_registry(
    state: Path, info: dict[str, Any], pairs: Sequence[tuple[str, str]], env: dict[str, str]
) -> Path:
    """Create each pipeline's experiment and registered model and grant its customer's registry
    identities (as the MLflow admin, in the workload venv); returns the identities file."""
    identities = state / services.AUTH_DIR / services.IDENTITIES_FILE
    command = [_steps_python(), "-m", "model_steps.registry_admin",
               "--tracking-uri", info["tracking_uri"], "--identities", str(identities),
               *(f"--pipeline={p}:{c}" for p, c in pairs)]  # fmt: skip
    done = subprocess.run(command, env={**env, **services.admin_env(state)}, capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise PlatformError(f"granting the registry failed:\n{done.stderr[-3000:]}")
    return identities


@contextmanager
def embedded_platform(
    root: Path,
    customers: Sequence[str] | None,
    *,
    size: str = DEFAULT_SIZE,
    log: Callable[[str], None] = print,
    dags_folder: Path = REPO / "dags",
) -> Iterator[Platform]:
    """Bring the embedded platform up under ``root`` (services state, lake, CRM store, logs) and
    tear down what this call started when the block ends, however it ends. The registry is
    granted for every pipeline of ``dags_folder`` whose customer is in ``customers`` (None: every
    customer of those DAG modules, so ``make airflow`` parses them once, here)."""
    root = root.resolve()
    lake = root / "lake"
    lake.mkdir(parents=True, exist_ok=True)
    env = base_env()
    # parsing and the example data do not need the services: both run while they start (the
    # data waits for the parse only when the customers are the DAG modules')
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=2) as background:
        parsing = background.submit(example_pipelines, dags_folder)

        def chosen() -> list[str]:
            if customers is not None:
                return list(customers)
            return sorted({customer for _, customer in parsing.result()})

        generating = background.submit(lambda: ensure_example_data(lake, chosen(), env, size))
        info, reused = stack.enter_context(_services(root / "services", env, log))
        wanted = set(chosen())
        pairs = [(p, c) for p, c in parsing.result() if c in wanted]
        identities = grant_registry(root / "services", info, pairs, env)
        crm_url = stack.enter_context(crm_receiver(root, env))
        gateway = stack.enter_context(pushgateway(root))
        platform = Platform(root, lake, info, crm_url, reused, pushgateway_url=gateway,
                            registry_identities=identities)  # fmt: skip
        platform.generated = generating.result()
        yield platform
