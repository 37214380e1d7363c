"""GitLab CI, run: gitlab-ci-local evaluates .gitlab-ci.yml and runs its jobs with the shell executor.

test_delivery_ci.py checks the file against GitLab's schema; this runs it. gitlab-ci-local's own
evaluation decides which jobs each pipeline gets (rules, workflow, `changes:`, `needs:`), and the jobs
that need no registry or cluster run their own before_script and script:

- `lint` (make lint), `resolve-bases`, `image-manifest` and `deploy-dags`, in that order, where the
  default-branch pipeline runs them. The kaniko build jobs between them (build-<kind>, the generated
  build-model-* jobs) cannot run here: they need the kaniko image, an ECR registry and AWS OIDC. Their
  artifacts are fed instead: the digest files kaniko's `--digest-file` writes, where the jobs leave
  them (.ci/digests/<kind>, .ci/model-digests/<model>/<kind>).
- `deploy-dags` pushes to a local bare repository standing in for the GitLab project (git's
  url.insteadOf maps the URL ci/deploy-dags.sh builds from CI_SERVER_HOST/CI_PROJECT_PATH and the
  token onto it), which also holds the deploy branch the manifest jobs read the previous manifest from.
- `test` is not run: its script is `make test`, which runs this file.

Each scenario runs in its own temporary git repository holding the working tree's files (tracked and
untracked-but-not-ignored, as they are now), so nothing in the checkout changes.
gitlab-ci-local comes from make delivery-tools (tools/bin/gitlab-ci-local); it needs git, bash and rsync.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from delivery_helpers import REPO, STEP_KINDS, output_of

sys.path.insert(0, str(REPO / "ci"))
from model_images import models_with_extras

GCL = REPO / "tools" / "bin" / "gitlab-ci-local"
PROJECT_URL = "https://gitlab.example.invalid/mlops/airflow-platform.git"
TOKEN = "local-deploy-token"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DEPLOY_BRANCH = "airflow-dags"
MODEL = "next_spend"  # given an extra requirement below, so the generated model-image jobs exist
APT_RSYNC = "apt-get install rsync (the CI jobs' before_script installs it)"
MR_ONLY = {"lint", "test"}
DEFAULT_BRANCH_ALWAYS = {"lint", "test", "resolve-bases", "image-manifest", "deploy-dags"}
SHARED_BUILDS = {f"build-{kind}" for kind in (*STEP_KINDS, "mlflow")}


def model_builds(model: str, kinds: tuple[str, ...] = STEP_KINDS) -> set[str]:
    return {f"build-model-{model.replace('_', '-')}-{kind}" for kind in kinds}


MODEL_BUILDS = model_builds(MODEL)
# the models that already declare extras (their jobs are in the CI file): they build with the rest
OTHER_MODELS = sorted(set(models_with_extras(REPO / "models")) - {MODEL})
OTHER_MODEL_BUILDS = set().union(*(model_builds(m) for m in OTHER_MODELS))


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


def require(path: Path | None, what: str, hint: str) -> Path:
    """The tool, else a skip naming it; in CI (CI=true) a missing tool fails instead."""
    if path is not None and path.exists():
        return path
    message = f"{what} missing ({path or 'not on PATH'}): {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> dict[str, Path]:
    """Tool paths, and a PATH on which the jobs find `python` (stdlib scripts) and `uv`."""
    found = {
        "gcl": require(GCL, "gitlab-ci-local", "run `make delivery-tools`"),
        "rsync": require(which("rsync"), "rsync (gitlab-ci-local copies files with it)", APT_RSYNC),
        "uv": require(
            which("uv") or REPO / ".tools" / "uv" / "bin" / "uv", "uv", "run `make setup`"
        ),
    }
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "python").symlink_to(sys.executable)
    found["bin"] = bin_dir
    return found


@pytest.fixture()
def project(tmp_path, tools) -> dict:
    """A fresh 'GitLab project': a bare repository with the deploy branch of an earlier deploy,
    and a clone-like repository on main holding the working tree, origin/main one commit back."""
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = home / "gitconfig"
    bare = tmp_path / "project.git"
    auth_url = PROJECT_URL.replace("https://", f"https://gitlab-ci-token:{TOKEN}@")
    gitconfig.write_text(
        "[user]\n\tname = gitlab-ci-local test\n\temail = ci-local@noreply.invalid\n"
        f'[url "file://{bare}"]\n\tinsteadOf = {auth_url}\n'
        "[init]\n\tdefaultBranch = main\n"
    )
    # The surrounding pipeline's own CI_*/GITLAB_* variables (make test in the `test` job) and any
    # GCL_* option defaults are not this run's: gitlab-ci-local sets the jobs' predefined variables.
    inherited = {
        k: v for k, v in os.environ.items()
        if k != "CI" and not k.startswith(("CI_", "GITLAB_", "GCL_"))
    }  # fmt: skip
    env = {
        **inherited,
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": os.pathsep.join([str(tools["bin"]), str(tools["uv"].parent), os.environ["PATH"]]),
    }
    git("init", "--quiet", "--bare", str(bare), cwd=tmp_path, env=env)
    git(
        "config", "receive.advertisePushOptions", "true", cwd=bare, env=env
    )  # as GitLab: -o ci.skip
    seed_deploy_branch(tmp_path / "seed", bare, env)
    repo = snapshot_worktree(tmp_path / "repo", bare, env)
    return {"repo": repo, "bare": bare, "env": env, "home": home}


def seed_deploy_branch(seed: Path, bare: Path, env: dict[str, str]) -> None:
    """An earlier deploy: every shared kind at digest(1), a model image, a DAG file since removed."""
    (seed / "dags").mkdir(parents=True)
    manifest = {
        "schema_version": 1,
        "commit": "f" * 40,
        "images": {kind: f"{REGISTRY}/mlops/{kind}@{digest(1)}" for kind in STEP_KINDS},
        "models": {
            "gone_model": {"train": f"{REGISTRY}/mlops/models/gone_model/train@{digest(9)}"}
        },
    }
    (seed / "dags" / "image_manifest.json").write_text(json.dumps(manifest))
    (seed / "dags" / "removed_dag.py").write_text("# deleted from main since\n")
    git("init", "--quiet", str(seed), cwd=seed.parent, env=env)
    git("checkout", "--quiet", "--orphan", DEPLOY_BRANCH, cwd=seed, env=env)
    git("add", "-A", cwd=seed, env=env)
    git("commit", "--quiet", "-m", "earlier deploy", cwd=seed, env=env)
    git("push", "--quiet", str(bare), f"HEAD:refs/heads/{DEPLOY_BRANCH}", cwd=seed, env=env)


def snapshot_worktree(repo: Path, bare: Path, env: dict[str, str]) -> Path:
    """The working tree's files in a new repository on main; gitlab-ci-local reads the project from
    the `gcl-origin` remote, `changes:` compare against origin/main, and `origin` is the bare repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git("init", "--quiet", "-b", "main", str(repo), cwd=repo.parent, env=env)
    git("add", "-A", cwd=repo, env=env)
    git("commit", "--quiet", "-m", "working tree", cwd=repo, env=env)
    git("remote", "add", "origin", str(bare), cwd=repo, env=env)
    git("remote", "add", "gcl-origin", PROJECT_URL, cwd=repo, env=env)
    git("update-ref", "refs/remotes/origin/main", "HEAD", cwd=repo, env=env)
    git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main", cwd=repo, env=env)
    return repo


def commit(project: dict, message: str, files: dict[str, str]) -> str:
    """Append to files in the project repository and commit: a push the pipeline sees."""
    repo, env = project["repo"], project["env"]
    for name, text in files.items():
        with open(repo / name, "a") as out:
            out.write(text)
    git("add", "-A", cwd=repo, env=env)
    git("commit", "--quiet", "-m", message, cwd=repo, env=env)
    return git("rev-parse", "HEAD", cwd=repo, env=env)


def add_model_requirement(project: dict) -> None:
    """Give MODEL an extra requirement and regenerate the model-image jobs, as its author would."""
    pyproject = project["repo"] / "models" / MODEL / "pyproject.toml"
    text = pyproject.read_text()
    text, count = re.subn(
        r"^dependencies = \[(.*)\]$", r'dependencies = [\1, "lightgbm==4.6.0"]', text, flags=re.M
    )
    assert count == 1, f"{pyproject}: no one-line `dependencies = [...]` to extend"
    pyproject.write_text(text)
    proc = subprocess.run(
        [sys.executable, "ci/model_images.py", "--write"], cwd=project["repo"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, output_of(proc)
    commit(project, f"{MODEL}: extra requirement, its image jobs", {})


def gcl(
    project: dict, tools: dict, *args: str, variables: dict[str, str] | None = None,
    schema: bool = False,
):  # fmt: skip
    """Run gitlab-ci-local in the project repository with the shell executor. `schema`: also
    validate against its GitLab JSON schema (1-2 s a call; once per scenario is enough)."""
    # CI_PROJECT_DIR: gitlab-ci-local sets /builds/<group>/<project> for a job with an image even
    # when the shell executor runs it in the repository; there the job's directory is the repository.
    variables = {
        "ECR_REGISTRY": REGISTRY, "DAGS_DEPLOY_TOKEN": TOKEN, "CI_PROJECT_DIR": str(project["repo"]),
        **(variables or {}),
    }  # fmt: skip
    cmd = [
        str(tools["gcl"]), "--home", str(project["home"]),
        "--force-shell-executor", "--no-color",
        "--json-schema-validation" if schema else "--no-json-schema-validation",
        "--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_COMMIT_BRANCH,CI_PROJECT_DIR",
        *[f"--variable={k}={v}" for k, v in variables.items()], *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=project["repo"], env=project["env"], capture_output=True, text=True, timeout=600
    )


def jobs(
    project: dict, tools: dict, *args: str, variables: dict[str, str] | None = None,
    schema: bool = False,
) -> dict:  # fmt: skip
    """name -> job as gitlab-ci-local lists it (when: never included)."""
    proc = gcl(project, tools, "--list-json", *args, variables=variables, schema=schema)
    assert proc.returncode == 0, output_of(proc)
    return {job["name"]: job for job in json.loads(proc.stdout)}


def active(listed: dict) -> set[str]:
    return {name for name, job in listed.items() if job["when"] != "never"}


def test_pipelines_get_the_jobs_their_rules_give(project, tools):
    repo, env = project["repo"], project["env"]
    git("checkout", "--quiet", "-b", "feature", cwd=repo, env=env)
    merge_request = jobs(
        project, tools, "--unset-variable", "CI_COMMIT_BRANCH",
        variables={"CI_PIPELINE_SOURCE": "merge_request_event"},
    )  # fmt: skip
    assert active(merge_request) == MR_ONLY
    assert active(jobs(project, tools)) == set(), (
        "a branch push without a merge request runs nothing"
    )
    git("checkout", "--quiet", "main", cwd=repo, env=env)
    unchanged = jobs(project, tools, schema=True)
    assert active(unchanged) == DEFAULT_BRANCH_ALWAYS, "no image input changed: no build"
    needs = {n["job"] for n in unchanged["deploy-dags"]["needs"]}
    assert needs == {"image-manifest", "test"}
    assert active(jobs(project, tools, variables={"BUILD_ALL_IMAGES": "true"})) == (
        DEFAULT_BRANCH_ALWAYS | SHARED_BUILDS | OTHER_MODEL_BUILDS
    )
    commit(project, "train image change", {"images/train/Dockerfile": "# touched\n"})
    own_train = set().union(*(model_builds(m, ("train",)) for m in OTHER_MODELS))
    assert active(jobs(project, tools)) == DEFAULT_BRANCH_ALWAYS | {"build-train"} | own_train
    proc = gcl(project, tools, "--validate-dependency-chain")
    assert proc.returncode == 0, output_of(proc)


def test_generated_model_image_jobs_build_after_resolve_bases(project, tools):
    add_model_requirement(project)
    listed = jobs(project, tools, schema=True)
    assert set(listed) >= MODEL_BUILDS
    for name in MODEL_BUILDS:
        assert listed[name]["stage"] == "build-models"
        assert [n["job"] for n in listed[name]["needs"]] == ["resolve-bases"]
    # origin/main is the commit before the new requirement: only the model's images rebuild
    assert active(listed) == DEFAULT_BRANCH_ALWAYS | MODEL_BUILDS
    step_change = commit(project, "step package", {"images/steps/pyproject.toml": "\n"})
    assert step_change
    everything = active(jobs(project, tools))
    assert everything == (
        DEFAULT_BRANCH_ALWAYS
        | MODEL_BUILDS
        | OTHER_MODEL_BUILDS
        | (SHARED_BUILDS - {"build-mlflow"})
    )


def test_lint_job_runs_make_lint(project, tools):
    """The merge-request lint job, before_script included, on the control-plane venv of make setup."""
    venv = require(REPO / ".venv" / "bin" / "ruff", "control-plane venv", "run `make setup`")
    repo = project["repo"]
    (repo / ".venv").symlink_to(venv.parents[1], target_is_directory=True)
    (repo / ".stamps").mkdir()
    for stamp in (REPO / ".stamps").glob("control-plane-*"):
        (repo / ".stamps" / stamp.name).touch()  # newer than the copied requirements.lock
    proc = gcl(
        project, tools, "lint", "--unset-variable", "CI_COMMIT_BRANCH",
        variables={"CI_PIPELINE_SOURCE": "merge_request_event"},
    )  # fmt: skip
    assert proc.returncode == 0, output_of(proc)
    assert "ruff check ." in proc.stdout and "ruff format --check ." in proc.stdout


def feed_kaniko_digests(repo: Path, directory: str, digests: dict[str, str]) -> None:
    """What kaniko build jobs leave as artifacts: `--digest-file .ci/<dir>/<kind>` holds the pushed
    image's digest (no newline)."""
    target = repo / ".ci" / directory
    target.mkdir(parents=True, exist_ok=True)
    for kind, value in digests.items():
        (target / kind).write_text(value)


def test_default_branch_pipeline_writes_manifest_and_deploys(project, tools):
    """resolve-bases, image-manifest, deploy-dags in stage order, sharing the project directory as
    GitLab passes artifacts on; build-train and the model's six image builds fed by their digests."""
    repo, bare, env = project["repo"], project["bare"], project["env"]
    add_model_requirement(project)
    sha = git("rev-parse", "HEAD", cwd=repo, env=env)
    feed_kaniko_digests(repo, "digests", {"train": digest(7)})  # stage build: build-train
    proc = gcl(project, tools, "resolve-bases")
    assert proc.returncode == 0, output_of(proc)
    bases = {p.name: p.read_text() for p in (repo / ".ci" / "bases").iterdir()}
    assert bases["train"] == f"{REGISTRY}/mlops/train@{digest(7)}"
    assert bases["ingest"] == f"{REGISTRY}/mlops/ingest@{digest(1)}", "from the deploy branch"

    model_digests = {kind: digest(n) for n, kind in enumerate(STEP_KINDS, start=2)}
    feed_kaniko_digests(repo, f"model-digests/{MODEL}", model_digests)  # stage build-models
    proc = gcl(project, tools, "image-manifest")
    assert proc.returncode == 0, output_of(proc)
    manifest = json.loads((repo / "dags" / "image_manifest.json").read_text())
    assert manifest["commit"] == sha
    assert manifest["images"]["train"] == f"{REGISTRY}/mlops/train@{digest(7)}"
    assert manifest["images"]["score"] == f"{REGISTRY}/mlops/score@{digest(1)}"
    assert set(manifest["models"]) == {MODEL}, "gone_model's directory does not exist: dropped"
    assert (
        manifest["models"][MODEL]["ingest"] == f"{REGISTRY}/mlops/models/{MODEL}/ingest@{digest(2)}"
    )

    proc = gcl(project, tools, "deploy-dags")
    assert proc.returncode == 0, output_of(proc)
    assert f"deployed {sha} to {DEPLOY_BRANCH}" in proc.stdout
    deployed = git("ls-tree", "-r", "--name-only", DEPLOY_BRANCH, cwd=bare, env=env).splitlines()
    assert {p.split("/")[0] for p in deployed} == {"DEPLOYED_COMMIT", "dags", "plugins", "models"}
    assert "dags/removed_dag.py" not in deployed
    assert not [p for p in deployed if re.match(r"models/[^/]+/tests/", p)]
    assert git("show", f"{DEPLOY_BRANCH}:DEPLOYED_COMMIT", cwd=bare, env=env) == sha
    shipped = json.loads(
        git("show", f"{DEPLOY_BRANCH}:dags/image_manifest.json", cwd=bare, env=env)
    )
    assert shipped == manifest
    head = git("rev-parse", DEPLOY_BRANCH, cwd=bare, env=env)

    proc = gcl(project, tools, "deploy-dags")
    assert proc.returncode == 0, output_of(proc)
    assert "already at this content" in proc.stdout
    assert git("rev-parse", DEPLOY_BRANCH, cwd=bare, env=env) == head
