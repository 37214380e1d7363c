"""`make airflow` as an operator uses it, in a real browser.

scripts/airflow_local.py starts the embedded platform (tiny example data) and Airflow standalone on a
free port; headless Chromium (Debian's chromium + chromium-driver, `make apt-tools`) driven by
selenium logs in, sees every DAG with no import error, opens a DAG's graph, fills the trigger form
with the example data date and triggers; the run must succeed end to end on the embedded services.
Then Ctrl-C (SIGINT) must leave no process and no listening port behind. One start for both tests
keeps the added time to one Airflow start-up and one pipeline run. On failure, screenshots, page
sources and the script's log go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "airflow_local"
DAG_ID = "customer_propensity__acme-foods"
DATA_DATE = "2026-06-29"  # the example data's last drop day (embedded.platform.DATA_DATE)
STEPS = ("ingest", "validate", "train", "evaluate", "score", "publish")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000", "--lang=en-US",
)  # fmt: skip
# the six steps on tiny data: ~3 min on an idle 2-core machine, 15 on a busy one
RUN_TIMEOUT_S = 1500

# set-up (platform + Airflow start) counts towards the first test's time
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


def free_port() -> int:
    """A free port below the kernel's ephemeral range. Airflow binds the port it is given some time
    after this returns; a port from ``bind(0)`` could meanwhile go to any server of the other test
    worker that binds port 0 (seen: the API server failed with "address already in use")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.Random().sample(range(20000, low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between 20000 and {low}")


def port_open(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()[:3])
    except psutil.Error:  # gone, or a zombie, since it was listed
        return process.name() if alive(process) else "(exited)"


@dataclass
class Served:
    """A running `scripts/airflow_local.py` and what it reported in its state file."""

    proc: subprocess.Popen[bytes]
    root: Path
    log: Path
    state: dict[str, Any]

    @property
    def ui(self) -> str:
        return str(self.state["ui"])

    def password(self) -> str:
        return str(json.loads(Path(self.state["password_file"]).read_text())["admin"])

    def api(self, path: str) -> Any:
        """GET from Airflow's REST API with a token for the admin user."""
        body = json.dumps({"username": "admin", "password": self.password()}).encode()
        login = urllib.request.Request(f"{self.ui}/auth/token", data=body, method="POST",
                                       headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(login, timeout=30) as resp:
            token = json.load(resp)["access_token"]
        get = urllib.request.Request(
            f"{self.ui}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(get, timeout=30) as resp:
            return json.load(resp)


def _keep_log(served: Served, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(served.log, ARTIFACTS / f"{name}.log")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("airflow-local")
    log = root / "airflow_local.log"
    command = [str(REPO / ".venv" / "bin" / "python"), str(REPO / "scripts" / "airflow_local.py"),
               "--port", str(free_port()), "--home", str(root / "home"),
               "--platform", str(root / "platform"), "--size", "tiny", "--timeout", "600"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    state_file = root / "platform" / "airflow_local.json"
    deadline = time.monotonic() + 900
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"make airflow did not serve the UI; its log:\n{log.read_text()[-4000:]}")
        time.sleep(2)
    served = Served(proc, root, log, json.loads(state_file.read_text()))
    try:
        yield served
    finally:
        if proc.poll() is None:  # the shutdown test did not run or did not stop it
            _keep_log(served, "not_stopped")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium and chromedriver are needed: run `make apt-tools`")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = chromium
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def artifacts_on_failure(driver: Any, served: Served, name: str) -> Iterator[None]:
    """Keep the browser's screenshot and page source and the script's log if the block fails."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
            (ARTIFACTS / f"{name}.html").write_text(driver.page_source)
        _keep_log(served, name)
        raise


def log_in(driver: Any, wait: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(served.ui)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(served.password())
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]"))).click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=nav-sidebar]")))


def expected_dag_ids() -> set[str]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors
    return set(bag.dag_ids)


def see_every_dag(driver: Any, wait: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By

    expected = expected_dag_ids()
    driver.get(f"{served.ui}/dags")

    def listed(d: Any) -> set[str]:
        return {e.text for e in d.find_elements(By.CSS_SELECTOR, "a[href^='/dags/']")}

    wait.until(lambda d: expected <= listed(d))
    assert "import error" not in driver.page_source.lower()
    assert served.api("/api/v2/importErrors")["total_entries"] == 0


def open_graph(driver: Any, wait: Any, served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(f"{served.ui}/dags/{DAG_ID}")
    graph = (By.CSS_SELECTOR, "button[aria-label^='Show Graph']")
    wait.until(ec.element_to_be_clickable(graph)).click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=rf__node-publish]")))
    nodes = driver.find_elements(By.CSS_SELECTOR, "[data-testid^=rf__node-]")
    assert [n.get_attribute("data-testid").removeprefix("rf__node-") for n in nodes] == list(STEPS)


def trigger_with_data_date(driver: Any, wait: Any) -> str:
    """Fill the trigger form as an operator would; returns the run id the UI navigates to."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-button]").click()
    field = wait.until(ec.element_to_be_clickable((By.NAME, "element_data_date")))
    field.send_keys(DATA_DATE[5:7] + DATA_DATE[8:10] + DATA_DATE[:4])  # the en-US date input
    assert field.get_attribute("value") == DATA_DATE
    unpause = driver.find_element(By.XPATH, "//label[contains(., 'on trigger')]//input")
    assert unpause.is_selected(), "a paused DAG is unpaused on trigger by default"
    driver.find_element(By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]").click()
    wait.until(ec.url_contains(f"/dags/{DAG_ID}/runs/"))
    return urllib.parse.unquote(driver.current_url.rsplit("/runs/", 1)[1].split("/")[0])


def wait_for_run(served: Served, run_id: str) -> dict[str, Any]:
    quoted = urllib.parse.quote(run_id, safe="")
    deadline, unanswered = time.monotonic() + RUN_TIMEOUT_S, ""
    while time.monotonic() < deadline:
        try:
            run = served.api(f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
        except (TimeoutError, urllib.error.URLError) as exc:
            # the API server shares 2 cores with the scheduler, the run's steps and the other test
            # worker: a poll it answers late is asked again; the run's own deadline still holds
            unanswered = f"; the last poll went unanswered: {exc}"
            continue
        if run["state"] in ("success", "failed"):
            return dict(run)
        time.sleep(5)
    pytest.fail(f"run {run_id} did not finish within {RUN_TIMEOUT_S}s{unanswered}")


def test_a_run_triggered_in_the_ui_goes_end_to_end(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    with artifacts_on_failure(browser, served, "ui_run"):
        log_in(browser, wait, served)
        see_every_dag(browser, wait, served)
        open_graph(browser, wait, served)
        run_id = trigger_with_data_date(browser, wait)
        run = wait_for_run(served, run_id)
        quoted = urllib.parse.quote(run_id, safe="")
        tasks = served.api(f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances")
        states = {t["task_id"]: (t["state"], t["try_number"]) for t in tasks["task_instances"]}
        assert run["state"] == "success", states
        assert run["conf"]["data_date"] == DATA_DATE
        assert states == {step: ("success", 1) for step in STEPS}
        runs = served.api(f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
        assert [r["run_type"] for r in runs] == ["manual"], "scheduled runs are off here"
        browser.refresh()  # what the operator sees: the run's state badge says success
        WebDriverWait(browser, 60).until(
            lambda d: any(
                "success" in e.text.lower()
                for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=state-badge]")
            )
        )
    # the run reached the embedded services: the CRM got records
    with urllib.request.urlopen(f"{served.state['crm']}/_stats", timeout=10) as resp:
        assert json.load(resp)["contacts"] > 0


def test_ctrl_c_leaves_no_process_and_no_listening_port(served: Served) -> None:
    below = [p for p in psutil.Process(served.proc.pid).children(recursive=True) if alive(p)]
    names = {p.pid: describe(p) for p in below}
    urls = [
        served.ui,
        served.state["tracking_uri"],
        served.state["s3_endpoint"],
        served.state["crm"],
    ]
    assert all(port_open(u) for u in urls)
    assert len(below) >= 8  # standalone + 4 components, moto, mlflow, the CRM receiver, ...
    served.proc.send_signal(signal.SIGINT)  # what Ctrl-C in `make airflow`'s terminal sends
    try:
        rc = served.proc.wait(timeout=180)
        assert rc == 0
        left = [f"{p.pid} {names[p.pid]}" for p in below if alive(p)]
        assert left == [], f"processes left behind: {left}"
        assert [u for u in urls if port_open(u)] == []
        assert not (served.root / "platform" / "airflow_local.json").exists()
    except BaseException:
        _keep_log(served, "shutdown")
        raise
