"""Step images: hadolint, checkov, and the contract every Dockerfile must keep."""

from __future__ import annotations

import re

import pytest
from delivery_helpers import (
    REPO,
    STEP_KINDS,
    assert_checkov_clean,
    checkov,
    output_of,
    report,
    run,
    tool,
)

IMAGES = REPO / "images"
ALL_IMAGES = (*STEP_KINDS, "mlflow")
DIGEST_FROM = re.compile(
    r"^FROM\s+(?:--platform=\S+\s+)?\S+:[^\s@]+@sha256:[0-9a-f]{64}(\s+AS\s+\S+)?\s*$", re.I
)


def dockerfile(kind: str) -> str:
    path = IMAGES / kind / "Dockerfile"
    assert path.is_file(), f"missing {path}"
    return path.read_text()


def instructions(text: str) -> list[str]:
    """Logical instructions (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def stages(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for ins in instructions(text):
        if ins.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(ins)
    return out


@pytest.mark.parametrize("kind", ALL_IMAGES)
def test_hadolint(kind):
    proc = run(
        [tool("hadolint"), "--failure-threshold", "warning", str(IMAGES / kind / "Dockerfile")]
    )
    assert proc.returncode == 0, output_of(proc)


def test_checkov_dockerfiles_clean():
    files = [str(IMAGES / k / "Dockerfile") for k in ALL_IMAGES]
    summary = checkov([arg for f in files for arg in ("-f", f)], "dockerfile")
    report("dockerfile", summary)
    assert_checkov_clean(summary, min_passed=50)


@pytest.mark.parametrize("kind", ALL_IMAGES)
def test_multi_stage_and_every_base_pinned_by_digest(kind):
    text = dockerfile(kind)
    froms = [i for i in instructions(text) if i.upper().startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: build stage + runtime stage"
    for line in froms:
        assert DIGEST_FROM.match(line), f"base not pinned by tag@sha256 digest: {line}"
        assert ":latest" not in line


@pytest.mark.parametrize("kind", ALL_IMAGES)
def test_runtime_stage_runs_as_uid_10001(kind):
    final = stages(dockerfile(kind))[-1]
    users = [i.split(None, 1)[1] for i in final if i.upper().startswith("USER ")]
    assert users and users[-1] == "10001:10001", f"final USER must be 10001:10001, got {users}"
    assert any("--uid 10001" in i for i in final), "runtime stage creates the UID 10001 user"


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_step_image_installs_its_extra_and_enters_the_step_cli(kind):
    text = dockerfile(kind)
    # the extra's packages come from the image's hashed lock (test_delivery_supply_chain.py checks
    # that lock against the extra); the workload package itself is installed without dependencies
    assert f"images/{kind}/requirements.lock" in text, f"install the {kind} image's lock"
    assert "/src/steps " in text and "--no-deps" in text
    assert "COPY images/steps/ /src/steps/" in text, "build context is the repo root"
    final = stages(text)[-1]
    entrypoints = [i for i in final if i.upper().startswith("ENTRYPOINT")]
    assert entrypoints == ['ENTRYPOINT ["model-step"]']
    assert any("model_steps" in i and "--help" in i for i in final), (
        "build fails when the CLI cannot start"
    )


@pytest.mark.parametrize("kind", ALL_IMAGES)
def test_no_secrets_baked_in(kind):
    for ins in instructions(dockerfile(kind)):
        if ins.upper().startswith(("ENV ", "ARG ")):
            assert not re.search(r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY)\w*\s*=", ins, re.I), ins
        assert "AKIA" not in ins


def test_ingest_image_carries_s3a_jars_and_a_jre():
    text = dockerfile("ingest")
    assert "openjdk-17-jre-headless" in text
    assert "fetch_s3a_jars.py" in text
    script = (IMAGES / "ingest" / "fetch_s3a_jars.py").read_text()
    assert "org.apache.hadoop:hadoop-aws:" in script and "hadoop-client-api-" in script


def test_train_image_is_cuda_tf215_horovod_nccl():
    text = dockerfile("train")
    froms = [i for i in instructions(text) if i.upper().startswith("FROM ")]
    assert all("nvidia/cuda:" in f for f in froms)
    assert "devel" in froms[0] and "cudnn8-runtime" in froms[-1]
    # the CUDA tensorflow and Horovod from their hashed locks (tools/lock_images.py)
    assert "tensorflow.lock" in text and "horovod.lock" in text
    assert "tensorflow==2.15.1" in (REPO / "images" / "train" / "tensorflow.lock").read_text()
    assert "horovod==0.28.1" in (REPO / "images" / "train" / "horovod.lock").read_text()
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in text and "HOROVOD_WITH_MPI=1" in text
    assert "--no-build-isolation" in text


def test_dockerignore_keeps_the_context_small():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "**" in lines, "deny by default"
    assert "!images/steps/**" in lines


@pytest.mark.parametrize("kind", ALL_IMAGES)
def test_every_hadolint_waiver_states_its_reason(kind):
    lines = dockerfile(kind).splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("# hadolint ignore="):
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and len(above) > 30, (
                f"line {i + 1}: waiver without a reason above it"
            )
