"""`make new-model NAME=<name> [TASK=regression] [FRAMEWORK=lightgbm] [OWNER=<team>]`: a working
model skeleton.

Writes ``dags/<name>.py`` (the control-plane module, data only) and ``models/<name>/`` (the
package ``mlmodels.<name>``: features and label on Spark, the network (Keras, the default) or the
``fit`` (LightGBM, XGBoost: a native booster; PyTorch: a small MLP's ``module`` and its training
loop), CRM record, settings, its own tests), installs the
package into the workload venv, and generates its expectation suite from the declared schema
(model_steps.expectations.skeleton). A framework with its own library also gets the library pinned
in its pyproject.toml at the workload lock's version, its hashed ``requirements.lock`` (as `make
lock` writes it: tools/lock_images.py) and its image jobs in .gitlab-ci.yml (ci/model_images.py).
The skeleton reads the example tenant's tables, so ``make run MODEL=<name>`` runs it end to end at
once; then make it yours.
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import lock_images  # noqa: E402  (tools/: the one definition of the locks)

WORKLOAD_LOCK = lock_images.WORKLOAD_LOCK
TEMPLATE = Path(__file__).with_name("model_template")
STEPS_PY = REPO / ".venv-steps" / "bin" / "python"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,38}[a-z0-9]$")  # the pipeline-name rule of the spec
TASKS = {
    # task -> (label column, label body, output activation, scores column)
    "binary_classification": (
        "ordered_again",
        '    orders = frames["orders"]\n'
        "    return orders.select(KEY).distinct().withColumn(LABEL, F.lit(1))\n",
        '"sigmoid"',
        "score",
    ),
    "regression": (
        "spend_next",
        '    orders = frames["orders"]\n'
        '    return orders.groupBy(KEY).agg(F.round(F.sum("amount"), 2).alias(LABEL))\n',
        '"softplus"',
        "prediction",
    ),
}
# framework -> (its libraries' distributions, pinned at images/steps/requirements.lock's versions;
# none: the shared images have them; its objective (loss) per task)
FRAMEWORKS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "keras": ((), {}),
    "lightgbm": (("lightgbm",), {"binary_classification": "binary", "regression": "regression"}),
    "xgboost": (
        ("xgboost-cpu",),  # imported as xgboost; without the CUDA NCCL wheel (docs/models.md)
        {"binary_classification": "binary:logistic", "regression": "reg:squarederror"},
    ),
    "pytorch": (
        ("torch", "safetensors"),  # PyPI's CUDA build: ~3 GB (docs/registry-access.md)
        {"binary_classification": "BCEWithLogitsLoss", "regression": "MSELoss"},
    ),
}
PARTS = {"keras": "keras.parts", "pytorch": "torch.parts"}  # else trees.parts
FILES = {  # template -> target, relative to the repo ({model}: the framework's model template)
    "dag.py.tmpl": "dags/{name}.py",
    "pyproject.toml.tmpl": "models/{name}/pyproject.toml",
    "init.py.tmpl": "models/{name}/mlmodels/{name}/__init__.py",
    "features.py.tmpl": "models/{name}/mlmodels/{name}/features.py",
    "{model}.py.tmpl": "models/{name}/mlmodels/{name}/model.py",
    "crm.py.tmpl": "models/{name}/mlmodels/{name}/crm.py",
    "settings.py.tmpl": "models/{name}/mlmodels/{name}/settings.py",
    "test_model.py.tmpl": "models/{name}/tests/test_{name}.py",
}


def parts(framework: str) -> dict[str, str]:
    """The framework family's template parts (keras.parts, trees.parts, torch.parts):
    placeholder -> text."""
    text = (TEMPLATE / PARTS.get(framework, "trees.parts")).read_text()
    chunks = re.split(r"^## (__[A-Z_]+__)\n", text, flags=re.M)[1:]
    return {
        key: body.removesuffix("\n") for key, body in zip(chunks[::2], chunks[1::2], strict=True)
    }


def requirements(framework: str) -> list[str]:
    """The framework's libraries, pinned at the workload lock's versions (none: keras)."""
    locked = lock_images.locked_versions(WORKLOAD_LOCK.read_text())
    return [f"{d}=={locked[d]}" for d in FRAMEWORKS[framework][0]]


def render(text: str, args: argparse.Namespace) -> str:
    label, body, activation, output = TASKS[args.task]
    pinned = requirements(args.framework)
    values = {
        **parts(args.framework),
        "__NAME__": args.name, "__DIST__": args.name.replace("_", "-"), "__TASK__": args.task,
        "__OWNER__": args.owner, "__DESCRIPTION__": args.description, "__LABEL__": label,
        "__LABEL_BODY__": body.rstrip("\n"), "__ACTIVATION__": activation, "__OUTPUT__": output,
        "__FRAMEWORK__": args.framework, "__REQUIREMENT__": "".join(f', "{r}"' for r in pinned),
        "__OBJECTIVE__": FRAMEWORKS[args.framework][1].get(args.task, ""),
    }  # fmt: skip
    for key, value in values.items():
        text = text.replace(key, value)
    return sort_first_party(text)


def sort_first_party(text: str) -> str:
    """Each run of ``from mlmodels.… import`` lines in isort's order (by module), wherever the
    model's own name sorts against mlmodels.restaurant_chain."""
    lines, out = text.split("\n"), []
    for own, group in itertools.groupby(lines, key=lambda s: s.startswith("from mlmodels.")):
        run = list(group)
        out += sorted(run, key=lambda s: s.split()[1]) if own else run
    return "\n".join(out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make new-model", description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--task", choices=sorted(TASKS), default="binary_classification")
    p.add_argument("--framework", default="keras")
    p.add_argument("--owner", default="data-science")
    p.add_argument("--description", default="A new model (edit this description).")
    p.add_argument("--no-install", action="store_true", help="write the files only (no suite)")
    p.add_argument("--repo", type=Path, default=REPO, help=argparse.SUPPRESS)  # tests: elsewhere
    args = p.parse_args(argv)
    if not NAME.fullmatch(args.name):
        p.error(f"NAME {args.name!r}: use 3-40 of a-z, 0-9 and _, starting with a letter")
    if args.framework not in FRAMEWORKS:
        p.error(f"FRAMEWORK {args.framework!r} is not one this scaffold writes: use one of "
                f"{', '.join(FRAMEWORKS)} (docs/models.md, \"Pick a framework\")")  # fmt: skip
    if len(args.description) > 72 or '"' in args.description or "\n" in args.description:
        p.error("--description: one line of at most 72 characters, without double quotes")
    targets = targets_of(args)
    taken = [str(t.relative_to(args.repo)) for t in targets if t.exists()]
    if taken or (args.repo / "models" / args.name).exists():
        p.error(f"{args.name} exists already ({', '.join(taken) or 'models/' + args.name}): "
                "nothing was written")  # fmt: skip
    return args


def targets_of(args: argparse.Namespace) -> dict[Path, Path]:
    """target file -> its template."""
    model = "model" if args.framework == "keras" else f"model_{args.framework}"
    return {
        args.repo / t.format(name=args.name): TEMPLATE / s.format(model=model)
        for s, t in FILES.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    repo: Path = args.repo
    targets = targets_of(args)
    for target, source in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(source.read_text(), args))
    written = list(targets)
    pinned = requirements(args.framework)
    if pinned:
        written.append(lock_model(repo, args.name, pinned))
        image_jobs(repo)
    if not args.no_install:
        install(args.name)
    for target in sorted(written):
        print(f"  wrote {target.relative_to(repo)}")
    print(f"next: edit models/{args.name}/mlmodels/{args.name}/features.py, then "
          f"`make run MODEL={args.name}`")  # fmt: skip
    return 0


def uv_command() -> list[str]:
    uv = REPO / ".tools" / "uv" / "bin" / "uv"
    return [str(uv)] if uv.exists() else ["uv"]


def lock_model(repo: Path, name: str, pinned: list[str]) -> Path:
    """models/<name>/requirements.lock: the requirement and its dependencies, hashed, at the
    workload lock's versions (what `make lock` writes for a model: tools/lock_images.py)."""
    out = repo / "models" / name / "requirements.lock"
    try:  # lock_images' own step: the same command, header and hashes as `make lock`
        return lock_images.lock_requirements(uv_command()[0], pinned, out)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            f"new-model: the files are written, but {', '.join(pinned)} could not be locked ({e}): "
            "run `make lock` once the package index is reachable"
        ) from e


def image_jobs(repo: Path) -> None:
    """The model's step-image jobs in .gitlab-ci.yml (ci/model_images.py --write), if it has one."""
    ci_file = repo / ".gitlab-ci.yml"
    if ci_file.exists():
        subprocess.run(
            [sys.executable, str(REPO / "ci" / "model_images.py"), "--write",
             "--models", str(repo / "models"), "--ci-file", str(ci_file)],
            check=True,
        )  # fmt: skip


def install(name: str) -> None:
    """Install the package editable into the workload venv (with its lock, if it has one: what
    `make setup` installs), then write its suite from its schema."""
    env_args = ["pip", "install", "-q", "--no-deps", "--python", str(STEPS_PY)]
    lock = REPO / "models" / name / "requirements.lock"
    if lock.exists():
        subprocess.run([*uv_command(), *env_args, "-r", str(lock)], check=True)
    subprocess.run([*uv_command(), *env_args, "-e", str(REPO / "models" / name)], check=True)
    subprocess.run(
        [str(STEPS_PY), "-m", "model_steps.expectations", f"mlmodels.{name}"], check=True
    )


if __name__ == "__main__":
    sys.exit(main())
