"""The kubernetes runtime, proven by rendering: every task becomes the object the cluster receives.

Pods come from the operator's own ``build_pod_request_obj(dry_run=True)`` and are checked with
``kubernetes-validate --strict`` (the Kubernetes OpenAPI schemas) before the assertions.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import kubernetes_validate
import pytest
from conftest import DAGS, select_runtime, write_manifest

from mlplatform.render import iter_rendered, render_task
from mlplatform_contract.registry_access import STEP_ROLES

K8S_VERSION = "1.33.0"  # EKS's current standard-support range
MODULES = sorted(p.name for p in DAGS.glob("*.py"))  # a broken manifest breaks each model's file


def validate_strict(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, str], dict[str, Any]]:
    """Every task of the project's DAGs as the cluster receives it (kubernetes runtime, digest-
    pinned manifest), rendered once for the module: a whole parse and render is seconds, and the
    tests using it only read it."""
    from mlplatform.images import load_manifest

    with pytest.MonkeyPatch.context() as mp:
        select_runtime(mp, "kubernetes", write_manifest(tmp_path_factory.mktemp("manifest")))
        try:
            return {(dag_id, task_id): obj for dag_id, task_id, obj in iter_rendered(DAGS)}
        finally:
            load_manifest.cache_clear()


def main_container(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


def test_every_task_renders_a_strictly_valid_pod(rendered) -> None:
    # (3 + 2 + 2 customers) x 6 steps + next_spend's spend_report x 2 + a monitor per customer
    # (the monitoring DAG's request_retrain runs in the Airflow worker: no pod of its own)
    assert len(rendered) == 7 * 6 + 2 + 7
    for obj in rendered.values():
        assert obj["kind"] == "Pod"
        validate_strict(obj)


def test_gpu_training_pod(rendered) -> None:
    pod = rendered[("customer_propensity__acme-foods", "train")]  # premium tier: 4 GPUs
    spec, container = pod["spec"], main_container(pod)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"] == {
        "mlops.io/node-pool": "gpu",
        "eks.amazonaws.com/capacityType": "ON_DEMAND",
    }
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    # 4 GPUs in one pod: one Horovod rank per GPU
    assert container["command"] == ["horovodrun"]
    assert container["args"][:4] == ["-np", "4", "-H", "localhost:4"]
    assert spec["priorityClassName"] == "ml-pipeline-training"
    assert spec["serviceAccountName"] == "step-train"


def test_standard_tier_trains_on_one_gpu_without_horovodrun(rendered) -> None:
    container = main_container(rendered[("customer_propensity__bella-pasta", "train")])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["command"] == ["python"]
    assert container["args"][:3] == ["-m", "model_steps", "train"]


def test_cpu_steps_have_no_gpu_and_may_use_spot(rendered) -> None:
    pod = rendered[("customer_propensity__acme-foods", "ingest")]
    assert "nvidia.com/gpu" not in main_container(pod)["resources"]["limits"]
    assert pod["spec"]["nodeSelector"] == {"mlops.io/node-pool": "cpu"}
    assert "tolerations" not in pod["spec"] or not pod["spec"]["tolerations"]
    publish = rendered[("customer_propensity__acme-foods", "publish")]
    assert publish["spec"]["nodeSelector"]["eks.amazonaws.com/capacityType"] == "ON_DEMAND"


def test_security_context_on_every_container(rendered) -> None:
    for pod in rendered.values():
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:  # the XCom sidecar too
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        assert {"name": "tmp", "mountPath": "/tmp"} in main_container(pod)["volumeMounts"]


TEAMS = {"customer_propensity": "growth-ml", "next_spend": "revenue-ml",
         "preferred_channel": "channels-ml"}  # fmt: skip
TASKS = {"next_spend": "regression", "preferred_channel": "multiclass_classification"}
KIND_OF = {"spend_report": "score", "monitor": "ingest"}  # run in the score / ingest image


def test_labels_images_and_contract(rendered) -> None:
    for (dag_id, task_id), pod in rendered.items():
        pipeline, customer = dag_id.split("__")[:2]
        kind = KIND_OF.get(task_id, task_id)
        labels = pod["metadata"]["labels"]
        assert labels["mlops.io/pipeline"] == pipeline
        assert labels["mlops.io/customer"] == customer
        assert labels["mlops.io/step"] == task_id and labels["mlops.io/kind"] == kind
        assert labels["mlops.io/team"] == TEAMS[pipeline]
        assert pod["metadata"]["namespace"] == "ml-steps"
        container = main_container(pod)
        assert container["image"].endswith("@sha256:" + "a" * 64)
        assert f"/mlops/{kind}@" in container["image"]
        args = container["args"]
        assert args[args.index("--customer") + 1] == customer
        assert args[args.index("--run-id") + 1] == "scheduled__2026-03-01T05:00:00+00:00"
        # scheduled 2026-03-01 05:00: the data date is the day before (data.landing_delay_days = 1)
        assert args[args.index("--data-date") + 1] == "2026-02-28"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert '"data_date": null' in env["STEP_PARAMS"]
        assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # a model is data
        # lineage MLflow records: the image by digest, CI's commit, the Airflow try from the pod label
        assert env["MLOPS_IMAGE_DIGEST"] == container["image"]
        assert env["MLOPS_GIT_SHA"] == "0" * 40  # the manifest's commit
        (try_number,) = [e for e in container["env"] if e["name"] == "AIRFLOW_CTX_TRY_NUMBER"]
        assert try_number["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['try_number']"
        assert {"configMapRef": {"name": "step-env"}} in container["envFrom"]
        assert not [f for f in container["envFrom"] if "secretRef" in f], "no Secret loaded whole"
        secret_keys = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                       for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip
        crm = {("crm-default", "CRM_API_TOKEN"), ("crm-default", "CRM_BASE_URL")}
        # registry identities: test_each_pod_gets_only_its_own_registry_identity_key_by_key
        crm_keys = {k for k in secret_keys if not k[0].startswith("mlflow-")}
        assert crm_keys == (crm if task_id == "publish" else set())
        assert pod["spec"]["serviceAccountName"] == f"step-{kind}"
        task = TASKS.get(pipeline, "binary_classification")
        model = {"ref": f"mlmodels.{pipeline}", "source": f"dags/{pipeline}.py", "task": task}
        assert json.loads(env["STEP_MODEL"]) == model


def test_operator_settings(runtime, manifest_file) -> None:
    from airflow.dag_processing.dagbag import DagBag

    runtime("kubernetes", manifest_file())
    dag = DagBag(dag_folder=str(DAGS)).dags["customer_propensity__casa-tacos"]
    for task in dag.tasks:
        assert task.on_finish_action.value == "delete_succeeded_pod"
        assert task.reattach_on_restart is True
        assert task.do_xcom_push is True
        assert 99 in task.skip_on_exit_code


MULTI_NODE = textwrap.dedent(
    '''
    """Airflow DAG module: a big model trained on several GPU nodes."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {
        "name": "big_model", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "ml-core", "description": "Multi-node.",
        "steps": {"train": {"gpu": 8, "nodes": 2, "memory": "200Gi", "shm_size": "32Gi"}},
        "tiers": {"t": {}}, "customers": [{"id": "giant-co", "tier": "t"}],
    })
    '''
)


def test_multi_node_training_renders_an_mpijob(runtime, manifest_file, dags_folder) -> None:
    runtime("kubernetes", manifest_file())
    folder = dags_folder({"big_model.py": MULTI_NODE}, with_project=False)
    ((dag_id, task_id, job),) = list(iter_rendered(folder))
    assert (dag_id, task_id) == ("big_model__giant-co", "train")
    assert job["apiVersion"] == "kubeflow.org/v2beta1" and job["kind"] == "MPIJob"
    assert len(job["metadata"]["name"]) <= 40
    spec = job["spec"]
    assert spec["slotsPerWorker"] == 8
    assert spec["runPolicy"]["cleanPodPolicy"] == "Running"
    assert set(spec["mpiReplicaSpecs"]) == {"Launcher", "Worker"}
    launcher, worker = spec["mpiReplicaSpecs"]["Launcher"], spec["mpiReplicaSpecs"]["Worker"]
    assert launcher["replicas"] == 1 and worker["replicas"] == 2
    launch_cmd = launcher["template"]["spec"]["containers"][0]["command"]
    assert launch_cmd[:5] == ["horovodrun", "-np", "16", "--hostfile", "/etc/mpi/hostfile"]
    assert launch_cmd[5:9] == ["python", "-m", "model_steps", "train"]
    worker_pod = worker["template"]["spec"]
    assert worker_pod["containers"][0]["command"] == [
        "/usr/sbin/sshd",
        "-De",
        "-f",
        "/etc/mlops/sshd_config",
    ]
    assert worker_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert worker_pod["nodeSelector"]["mlops.io/node-pool"] == "gpu"
    assert (
        "nvidia.com/gpu" not in launcher["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    for role in (launcher, worker):  # each template is a valid Pod in its own right
        template = role["template"]
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        assert env["MLOPS_IMAGE_DIGEST"].endswith("/mlops/train@sha256:" + "a" * 64)
        assert env["MLOPS_GIT_SHA"] == "0" * 40 and env["AIRFLOW_CTX_TRY_NUMBER"] == "1"
        metadata = {"name": "x", **template["metadata"]}
        validate_strict(
            {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
        )
        assert (
            template["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"]
            is False
        )


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, "has no image for step 'score'"),
        ("registry.example/mlops/score:latest", "uses the moving tag ':latest'"),
        ("registry.example/mlops/score:1.4.2", "is a tag without a digest"),
        ("registry.example/mlops/score@sha256:abc", "is not of the form"),
    ],
)
def test_unpinned_images_are_parse_time_errors(
    ref, expected, runtime, manifest_file, dagbag
) -> None:
    runtime("kubernetes", manifest_file(score=ref))
    bag = dagbag(DAGS)
    assert sorted(p.rsplit("/", 1)[-1] for p in bag.import_errors) == MODULES  # every model's file
    for error in bag.import_errors.values():
        assert expected in error and "step 'score'" in error


def test_missing_manifest_is_explained(runtime, tmp_path, dagbag) -> None:
    runtime("kubernetes", tmp_path / "nowhere.json")
    errors = dagbag(DAGS).import_errors.values()
    assert len(errors) == len(MODULES)
    assert all("no image manifest at" in e and "mlops_image_manifest" in e for e in errors)


def test_airflow_variable_overrides_the_manifest_file(runtime, manifest_file, monkeypatch) -> None:
    import json

    runtime("kubernetes", manifest_file())
    pinned = {"images": {s: f"other.example/{s}@sha256:{'c' * 64}" for s in
                         ("ingest", "validate", "train", "evaluate", "score", "publish")}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_VAR_MLOPS_IMAGE_MANIFEST", json.dumps(pinned))
    from airflow.dag_processing.dagbag import DagBag

    task = DagBag(dag_folder=str(DAGS)).dags["customer_propensity__acme-foods"].get_task("score")
    assert main_container(render_task(task))["image"] == f"other.example/score@sha256:{'c' * 64}"


def test_deferrable_mode_is_a_deployment_switch(
    runtime, manifest_file, monkeypatch, dagbag
) -> None:
    runtime("kubernetes", manifest_file())
    monkeypatch.setenv("MLOPS_K8S_DEFERRABLE", "true")
    dag = dagbag(DAGS).dags["customer_propensity__acme-foods"]
    assert all(task.deferrable for task in dag.tasks)


def test_unknown_runtime_is_an_import_error(runtime, dagbag) -> None:
    runtime("kubernetes-ish")
    errors = dagbag(DAGS).import_errors.values()
    assert len(errors) == len(MODULES)
    for error in errors:
        assert (
            "MLOPS_RUNTIME='kubernetes-ish' is not a runtime; use one of local, kubernetes" in error
        )


@pytest.mark.parametrize(
    ("conditions", "state"),
    [
        (None, "Running"),
        ([{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}], "Running"),
        (
            [{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}],
            "Succeeded",
        ),
        ([{"type": "Running", "status": "False"}, {"type": "Failed", "status": "True"}], "Failed"),
    ],
)
def test_mpijob_state_from_conditions(conditions, state) -> None:
    from mlplatform.runtime.mpijob import job_state

    assert job_state({"conditions": conditions} if conditions else None) == state


def test_mpijob_result_comes_from_the_launcher_log() -> None:
    from mlplatform.runtime.mpijob import result_from_log

    lines = ["epoch 1 auc 0.7", 'STEP_RESULT_JSON={"auc": 0.81}', "[1]<stdout>: bye"]
    assert result_from_log(lines) == {"auc": 0.81}
    assert result_from_log(["no result here"]) is None


def test_a_model_with_its_own_images_runs_them_and_others_keep_the_shared_ones(
    runtime, manifest_file, monkeypatch
) -> None:
    """Images per model: the manifest's ``models`` section pins next_spend's own train image;
    its other steps, and every step of customer_propensity, run the shared images."""
    import json

    runtime("kubernetes", manifest_file())
    shared = {s: f"shared.example/{s}@sha256:{'c' * 64}" for s in
              ("ingest", "validate", "train", "evaluate", "score", "publish")}  # fmt: skip
    own = f"models.example/next-spend-train@sha256:{'d' * 64}"
    manifest = {"images": shared, "models": {"next_spend": {"train": own}}}
    monkeypatch.setenv("AIRFLOW_VAR_MLOPS_IMAGE_MANIFEST", json.dumps(manifest))
    from airflow.dag_processing.dagbag import DagBag

    dags = DagBag(dag_folder=str(DAGS)).dags
    spend, propensity = dags["next_spend__acme-foods"], dags["customer_propensity__acme-foods"]
    assert main_container(render_task(spend.get_task("train")))["image"] == own
    assert main_container(render_task(spend.get_task("score")))["image"] == shared["score"]
    assert main_container(render_task(propensity.get_task("train")))["image"] == shared["train"]
    bad = {"images": shared, "models": {"next_spend": {"train": "models.example/x:latest"}}}
    monkeypatch.setenv("AIRFLOW_VAR_MLOPS_IMAGE_MANIFEST", json.dumps(bad))
    from mlplatform.images import load_manifest

    load_manifest.cache_clear()
    errors = DagBag(dag_folder=str(DAGS)).import_errors
    ((path, error),) = errors.items()
    assert path.endswith("next_spend.py") and "model 'next_spend' step 'train'" in error


def test_a_models_own_step_runs_after_its_anchor_in_that_steps_image(rendered) -> None:
    """Extra steps: next_spend's spend_report is placed after score, runs the score image and
    service account, and its argv is the same contract with its own step name."""
    pod = rendered[("next_spend__acme-foods", "spend_report")]
    score = rendered[("next_spend__acme-foods", "score")]
    assert main_container(pod)["image"] == main_container(score)["image"]
    assert pod["spec"]["serviceAccountName"] == "step-score"
    container = main_container(pod)
    assert container["command"] == ["python"]
    assert container["args"][:3] == ["-m", "model_steps", "spend_report"]
    assert pod["metadata"]["labels"]["mlops.io/step"] == "spend_report"
    assert ("customer_propensity__acme-foods", "spend_report") not in rendered


class FakeCoreV1:
    """Just the CoreV1Api calls the pod operator makes after its pod finished (a real cluster's
    answers, minus the cluster): read the pod, patch its 'already checked' label, list events."""

    def __init__(self, pod: Any) -> None:
        self.pod, self.patched = pod, []

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        return self.pod

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **_: Any) -> Any:
        self.patched.append(body)
        return self.pod

    def list_namespaced_event(self, namespace: str, **_: Any) -> Any:
        from kubernetes.client import models as k8s

        return k8s.CoreV1EventList(items=[])


def finished_pod(exit_code: int) -> Any:
    """A step pod as the API returns it once its container has terminated with ``exit_code``."""
    from kubernetes.client import models as k8s

    terminated = k8s.V1ContainerStateTerminated(exit_code=exit_code, reason="Error")
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(
            name="customer-propensity-acme-foods-ingest-x", namespace="ml-steps", labels={}
        ),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image="i")]),
        status=k8s.V1PodStatus(
            phase="Failed",
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="base",
                    image="i",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(terminated=terminated),
                )
            ],
        ),
    )


@pytest.mark.parametrize(
    ("exit_code", "retried"),
    [(2, False), (3, False), (1, True), (137, True)],
    ids=["usage", "check_failed", "failed", "killed"],
)
def test_pod_exit_code_decides_whether_airflow_retries(
    runtime, manifest_file, exit_code: int, retried: bool
) -> None:
    """The operator's own post-completion path (cleanup, sync and deferrable alike) on a pod whose
    step container exited with ``exit_code``: 2 (usage) and 3 (a broken model contract, a failed
    validation) are failures without retries, others keep them."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    runtime("kubernetes", manifest_file())
    task = DagBag(dag_folder=str(DAGS)).dags["customer_propensity__acme-foods"].get_task("ingest")
    assert task.retries > 0
    pod = finished_pod(exit_code)
    task.client = api = FakeCoreV1(pod)
    with pytest.raises(AirflowException) as caught:
        task.cleanup(pod, pod)
    assert isinstance(caught.value, AirflowFailException) is not retried
    assert api.patched, "the operator still labels the failed pod as checked"
    if exit_code == 2:
        assert "exited with code 2 (bad invocation or missing configuration)" in str(caught.value)
    if exit_code == 3:
        assert "exited with code 3 (the model broke its declared contract" in str(caught.value)
        assert "clear the task to re-run it" in str(caught.value)
    if not retried:
        assert "returned a failure" in str(caught.value)  # the provider's own message is kept


def test_skip_exit_code_still_skips_in_the_pod_operator(runtime, manifest_file) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowSkipException

    runtime("kubernetes", manifest_file())
    task = DagBag(dag_folder=str(DAGS)).dags["customer_propensity__acme-foods"].get_task("evaluate")
    pod = finished_pod(99)
    task.client = FakeCoreV1(pod)
    with pytest.raises(AirflowSkipException):
        task.cleanup(pod, pod)


BIG_CUSTOMER = textwrap.dedent(
    '''
    """Airflow DAG module: one customer too big for one ingest pod."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {
        "name": "big_data", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "ml-core",
        "description": "Spark executors for ingest.",
        "steps": {"ingest": {}, "train": {}},
        "tiers": {"xl": {"data": {"spark": {"executors": 24, "executor_memory": "12g"}}},
                  "std": {}},
        "customers": [{"id": "giant-co", "tier": "xl"}, {"id": "small-co", "tier": "std"}],
    })
    '''
)


def test_a_tier_switches_ingest_to_spark_executors(runtime, manifest_file, dags_folder) -> None:
    import json

    runtime("kubernetes", manifest_file())
    folder = dags_folder({"big_data.py": BIG_CUSTOMER}, with_project=False)
    rendered = {(d, t): o for d, t, o in iter_rendered(folder)}
    big = rendered[("big_data__giant-co", "ingest")]
    validate_strict(big)
    container = main_container(big)
    env = {e["name"]: e for e in container["env"]}
    image = container["image"]
    assert "@sha256:" in image
    assert env["MLOPS_SPARK_MASTER"]["value"] == "k8s://https://kubernetes.default.svc"
    assert env["SPARK_EXECUTOR_IMAGE"]["value"] == image
    # executors in their own namespace, as their own account (helm/platform sparkExecutors)
    assert env["SPARK_EXECUTOR_NAMESPACE"]["value"] == "ml-spark"
    assert env["SPARK_EXECUTOR_SERVICE_ACCOUNT"]["value"] == "spark-executor"
    assert env["SPARK_DRIVER_NAMESPACE"]["value"] == big["metadata"]["namespace"]
    assert big["spec"]["serviceAccountName"] == "step-ingest"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert big["spec"]["automountServiceAccountToken"] is True, "the driver creates its executors"
    volumes = {v["name"]: v for v in big["spec"]["volumes"]}
    assert volumes["spark-executor-template"]["configMap"]["name"] == "spark-executor-pod-template"
    config = json.loads(env["STEP_CONFIG"]["value"])
    assert config["data"]["spark"]["executors"] == 24
    # the same model's standard customer, and every other step, keep local[N] and no API token
    small = rendered[("big_data__small-co", "ingest")]
    assert "MLOPS_SPARK_MASTER" not in {e["name"] for e in main_container(small)["env"]}
    assert small["spec"]["automountServiceAccountToken"] is False
    train = rendered[("big_data__giant-co", "train")]
    assert "MLOPS_SPARK_MASTER" not in {e["name"] for e in main_container(train)["env"]}


def test_spark_settings_are_checked_at_parse_time(runtime, dags_folder, dagbag) -> None:
    runtime("local")
    bad = BIG_CUSTOMER.replace('"executor_memory": "12g"', '"executor_memory": "12GB"')
    (error,) = dagbag(dags_folder({"big_data.py": bad}, with_project=False)).import_errors.values()
    assert "data.spark.executor_memory" in error


def test_each_pod_gets_only_its_own_registry_identity_key_by_key(rendered) -> None:
    for (dag_id, task_id), pod in rendered.items():
        customer = dag_id.split("__")[1]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in main_container(pod)["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        role = STEP_ROLES.get(task_id)
        if role is None:  # ingest, validate, publish, a model's own step: never call MLflow
            assert not {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} & set(refs), task_id
            continue
        secret = f"mlflow-{role}-{customer}"
        assert refs["MLFLOW_TRACKING_USERNAME"] == {"name": secret, "key": "username"}, task_id
        assert refs["MLFLOW_TRACKING_PASSWORD"] == {"name": secret, "key": "password"}, task_id


def _mounted_ca(spec: dict) -> str | None:
    """Where a pod's main container finds the MLflow CA (its env and its mount agree), or None."""
    env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env") or []}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {m["name"]: m for m in spec["containers"][0].get("volumeMounts") or []}
    if "mlflow-ca" not in volumes:
        assert "MLFLOW_TRACKING_SERVER_CERT_PATH" not in env and "mlflow-ca" not in mounts
        return None
    assert volumes["mlflow-ca"]["configMap"] == {
        "name": "mlflow-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]
    }  # fmt: skip
    assert mounts["mlflow-ca"]["readOnly"] is True
    path = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    assert path == mounts["mlflow-ca"]["mountPath"] + "/ca.crt"
    return path


def test_only_the_steps_that_call_mlflow_trust_its_ca(rendered) -> None:
    """TLS to MLflow in the cluster: the CA (a ConfigMap, one key) is on exactly the pods that
    carry a registry identity, and MLflow's client is pointed at it."""
    for (_, task_id), pod in rendered.items():
        assert (_mounted_ca(pod["spec"]) is not None) == (task_id in STEP_ROLES), task_id


def test_multi_node_training_carries_its_identity_and_the_ca(runtime, manifest_file, dags_folder):
    """The launcher reads the trainer identity key by key (horovodrun forwards it to every rank);
    every pod mounts the CA; no worker pod references a Secret."""
    runtime("kubernetes", manifest_file())
    folder = dags_folder({"big_model.py": MULTI_NODE}, with_project=False)
    ((_, _, job),) = list(iter_rendered(folder))
    specs = {k: v["template"]["spec"] for k, v in job["spec"]["mpiReplicaSpecs"].items()}
    refs = {
        k: {e["name"]: e["valueFrom"]["secretKeyRef"] for e in spec["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
        for k, spec in specs.items()
    }  # fmt: skip
    secret = "mlflow-trainer-giant-co"
    assert refs["Launcher"] == {
        "MLFLOW_TRACKING_USERNAME": {"name": secret, "key": "username"},
        "MLFLOW_TRACKING_PASSWORD": {"name": secret, "key": "password"},
    }
    assert refs["Worker"] == {}
    ca = _mounted_ca(specs["Launcher"])
    worker_mounts = {
        m["name"]: m["mountPath"] for m in specs["Worker"]["containers"][0]["volumeMounts"]
    }
    assert ca == worker_mounts["mlflow-ca"] + "/ca.crt"
