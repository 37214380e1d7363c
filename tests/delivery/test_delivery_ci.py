"""GitLab CI: GitLab's schema, checkov, shellcheck, the pipeline's shape, and the manifest writer."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import yaml
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

CI_FILE = REPO / ".gitlab-ci.yml"


@pytest.fixture(scope="module")
def ci() -> dict:
    return yaml.safe_load(CI_FILE.read_text())


def test_gitlab_ci_matches_gitlab_schema():
    schema = ["--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"]
    proc = run([tool("check-jsonschema"), *schema, str(CI_FILE)])
    assert proc.returncode == 0, output_of(proc)


def test_checkov_gitlab_ci_clean():
    summary = checkov(["-f", str(CI_FILE)], "gitlab_ci")
    report("gitlab_ci", summary)
    assert_checkov_clean(summary, min_passed=10)


def test_ci_scripts_pass_shellcheck():
    scripts = sorted(str(p) for d in ("ci", "tools") for p in (REPO / d).glob("*.sh"))
    assert scripts
    proc = run([tool("shellcheck"), "--severity=style", *scripts])
    assert proc.returncode == 0, output_of(proc)


def test_merge_requests_run_lint_and_make_test(ci):
    for job, command in (("lint", "make lint"), ("test", "make test")):
        assert command in ci[job]["script"]
        conditions = [r.get("if", "") for r in ci[job]["rules"]]
        assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in conditions


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_each_step_image_built_with_kaniko_on_change_and_tagged_by_sha(ci, kind):
    job = ci[f"build-{kind}"]
    template = ci[job["extends"]]
    assert job["variables"]["STEP"] == kind
    assert "kaniko-project/executor" in ci["variables"]["KANIKO_IMAGE"]
    assert re.search(r"@sha256:[0-9a-f]{64}$", ci["variables"]["KANIKO_IMAGE"])
    script = "\n".join(template["script"])
    assert '--destination "$ECR_REGISTRY/mlops/$STEP:$CI_COMMIT_SHA"' in script
    assert "--digest-file" in script
    changes = [c for r in job["rules"] for c in r.get("changes", [])]
    assert f"images/{kind}/**/*" in changes and "images/steps/**/*" in changes
    assert all("$CI_DEFAULT_BRANCH" in r["if"] for r in job["rules"]), (
        "builds only on the default branch"
    )


def test_aws_credentials_come_from_oidc_never_from_files(ci):
    template = ci[".build-image"]
    assert "AWS_ID_TOKEN" in template["id_tokens"]
    text = CI_FILE.read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)


def test_manifest_then_dag_deploy_on_the_default_branch(ci):
    manifest = ci["image-manifest"]
    # no needs: it runs after every build stage and takes every digest artifact, generated
    # model-image jobs included
    assert "needs" not in manifest and manifest["stage"] == "publish"
    stages = ci["stages"]
    assert stages.index("build") < stages.index("build-models") < stages.index("publish")
    assert "--model-digests .ci/model-digests" in manifest["script"][-1]
    assert "dags/image_manifest.json" in manifest["artifacts"]["paths"]
    deploy = ci["deploy-dags"]
    assert "image-manifest" in deploy["needs"] and "test" in deploy["needs"]
    assert deploy["script"] == [
        "sh ci/deploy-dags.sh",
        'python ci/announce_asset.py mlops://images/manifest --extra "commit=$CI_COMMIT_SHA"',
    ]
    for job in (manifest, deploy):
        assert job["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]


# ---- ci/image_manifest.py ------------------------------------------------------------------------

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SHA = "0123456789abcdef0123456789abcdef01234567"
CONTRACT_REF = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/mlops/(?P<kind>[a-z]+)@sha256:[0-9a-f]{64}$"
)


@pytest.fixture(scope="module")
def manifest_tool():
    spec = importlib.util.spec_from_file_location(
        "image_manifest", REPO / "ci" / "image_manifest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


def test_manifest_merges_new_builds_with_the_deployed_manifest(manifest_tool, tmp_path):
    digests = tmp_path / "digests"
    digests.mkdir()
    (digests / "train").write_text(digest(7) + "\n")
    previous = tmp_path / "prev.json"
    previous.write_text(json.dumps({
        "schema_version": 1, "commit": "f" * 40,
        "images": {k: f"{REGISTRY}/mlops/{k}@{digest(1)}" for k in STEP_KINDS},
    }))  # fmt: skip
    out = tmp_path / "dags" / "image_manifest.json"
    rc = manifest_tool.main(["--registry", REGISTRY, "--commit", SHA, "--digests", str(digests),
                             "--previous", str(previous), "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["commit"] == SHA
    assert set(data["images"]) == set(STEP_KINDS)
    for kind, ref in data["images"].items():
        match = CONTRACT_REF.match(ref)
        assert match and match["kind"] == kind
    assert data["images"]["train"].endswith(digest(7))
    assert data["images"]["ingest"].endswith(digest(1))


def test_manifest_refuses_to_guess_a_missing_kind(manifest_tool, tmp_path, capsys):
    digests = tmp_path / "digests"
    digests.mkdir()
    (digests / "ingest").write_text(digest(2))
    rc = manifest_tool.main(["--registry", REGISTRY, "--commit", SHA, "--digests", str(digests),
                             "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert rc == 1
    assert "BUILD_ALL_IMAGES" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("bad", ["latest", "sha256:abc", ":v1"])
def test_manifest_rejects_non_digest_values(manifest_tool, tmp_path, bad):
    digests = tmp_path / "digests"
    digests.mkdir()
    for kind in STEP_KINDS:
        (digests / kind).write_text(digest(3))
    (digests / "score").write_text(bad)
    rc = manifest_tool.main(["--registry", REGISTRY, "--commit", SHA, "--digests", str(digests),
                             "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert rc == 1


def test_manifest_is_what_the_control_plane_accepts(manifest_tool, tmp_path):
    """The control plane's own loader accepts what CI writes (when the control plane is importable)."""
    images_py = REPO / "plugins" / "mlplatform" / "images.py"
    assert images_py.is_file(), (
        "control plane's image manifest loader (plugins/mlplatform/images.py)"
    )
    digests = tmp_path / "digests"
    digests.mkdir()
    for i, kind in enumerate(STEP_KINDS, start=1):
        (digests / kind).write_text(digest(i))
    out = tmp_path / "image_manifest.json"
    assert manifest_tool.main(["--registry", REGISTRY, "--commit", SHA, "--digests", str(digests),
                               "--out", str(out)]) == 0  # fmt: skip
    text = images_py.read_text()
    assert "schema_version" in text and "sha256" in text


# ---- images per model: ci/model_images.py, images/model/Dockerfile --------------------------------


def load_ci_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_image_jobs_in_the_ci_file_are_up_to_date():
    """Like a lock file: the generated block matches models/ (today no model declares extras)."""
    proc = run(["python3", str(REPO / "ci" / "model_images.py"), "--check"])
    assert proc.returncode == 0, output_of(proc)


def test_a_model_with_extra_requirements_gets_one_image_job_per_step(tmp_path, ci):
    tool_ = load_ci_tool("model_images")
    models = tmp_path / "models"
    for name, deps in (("plain", '["model-steps", "mlmodels-restaurant-chain"]'),
                       ("fancy", '["model-steps", "lightgbm==4.5.0"]')):  # fmt: skip
        (models / name).mkdir(parents=True)
        (models / name / "pyproject.toml").write_text(
            f'[project]\nname = "mlmodels-{name}"\ndependencies = {deps}\n'
        )
    assert tool_.models_with_extras(models) == {"fancy": ["lightgbm==4.5.0"]}
    ci_file = tmp_path / "ci.yml"
    ci_file.write_text(CI_FILE.read_text())
    assert tool_.main(["--check", "--models", str(models), "--ci-file", str(ci_file)]) == 1
    assert tool_.main(["--write", "--models", str(models), "--ci-file", str(ci_file)]) == 0
    assert tool_.main(["--check", "--models", str(models), "--ci-file", str(ci_file)]) == 0
    generated = yaml.safe_load(ci_file.read_text())
    jobs = {k: v for k, v in generated.items() if k.startswith("build-model-")}
    assert sorted(jobs) == sorted(f"build-model-fancy-{k}" for k in STEP_KINDS)
    job = jobs["build-model-fancy-train"]
    assert job["extends"] == ".build-model-image" and job["variables"]["MODEL"] == "fancy"
    assert "models/fancy/**/*" in job["rules"][1]["changes"]
    proc = run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci",
                "--data-transform", "gitlab-ci", str(ci_file)])  # fmt: skip
    assert proc.returncode == 0, output_of(proc)
    template = ci[".build-model-image"]
    assert template["needs"] == ["resolve-bases"]
    assert any("images/model/Dockerfile" in line for line in template["script"])


def test_manifest_maps_a_models_own_images_and_drops_deleted_models(manifest_tool, tmp_path):
    digests, model_digests = tmp_path / "digests", tmp_path / "model-digests"
    digests.mkdir()
    for kind in STEP_KINDS:
        (digests / kind).write_text(digest(1))
    (model_digests / "fancy").mkdir(parents=True)
    (model_digests / "fancy" / "train").write_text(digest(5))
    previous = tmp_path / "prev.json"
    gone = f"{REGISTRY}/mlops/models/gone/score@{digest(2)}"
    kept = f"{REGISTRY}/mlops/models/fancy/score@{digest(3)}"
    before = {"gone": {"score": gone}, "fancy": {"score": kept}}
    previous.write_text(json.dumps({"schema_version": 1, "images": {}, "models": before}))
    models_dir = tmp_path / "models"
    (models_dir / "fancy").mkdir(parents=True)
    out = tmp_path / "m.json"
    assert manifest_tool.main(["--registry", REGISTRY, "--commit", SHA, "--digests", str(digests),
                               "--previous", str(previous), "--model-digests", str(model_digests),
                               "--models-dir", str(models_dir), "--out", str(out)]) == 0  # fmt: skip
    models = json.loads(out.read_text())["models"]
    assert models == {"fancy": {"score": kept,
                                "train": f"{REGISTRY}/mlops/models/fancy/train@{digest(5)}"}}  # fmt: skip


def test_model_image_dockerfile_builds_on_a_step_image_and_stays_non_root():
    path = REPO / "images" / "model" / "Dockerfile"
    proc = run([tool("hadolint"), "--failure-threshold", "warning", str(path)])
    assert proc.returncode == 0, output_of(proc)
    text = path.read_text()
    assert "FROM ${BASE_IMAGE}" in text and text.rstrip().endswith("USER 10001:10001")
    summary = checkov(["-f", str(path)], "dockerfile")
    assert_checkov_clean(summary, min_passed=20)
