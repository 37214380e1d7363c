"""`make new-model NAME=<name> [TASK=regression] [OWNER=<team>]`: a working model skeleton.

Writes ``dags/<name>.py`` (the control-plane module, data only) and ``models/<name>/`` (the
package ``mlmodels.<name>``: features and label on Spark, network, CRM record, settings, its own
tests), installs the package into the workload venv, and generates its expectation suite from the
declared schema (model_steps.expectations.skeleton). The skeleton reads the example tenant's
tables, so ``make run MODEL=<name>`` runs it end to end at once; then make it yours.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
FILES = {  # template -> target, relative to the repo
    "dag.py.tmpl": "dags/{name}.py",
    "pyproject.toml.tmpl": "models/{name}/pyproject.toml",
    "init.py.tmpl": "models/{name}/mlmodels/{name}/__init__.py",
    "features.py.tmpl": "models/{name}/mlmodels/{name}/features.py",
    "model.py.tmpl": "models/{name}/mlmodels/{name}/model.py",
    "settings.py.tmpl": "models/{name}/mlmodels/{name}/settings.py",
    "test_model.py.tmpl": "models/{name}/tests/test_{name}.py",
}


def render(text: str, args: argparse.Namespace) -> str:
    label, body, activation, output = TASKS[args.task]
    values = {
        "__NAME__": args.name, "__DIST__": args.name.replace("_", "-"), "__TASK__": args.task,
        "__OWNER__": args.owner, "__DESCRIPTION__": args.description, "__LABEL__": label,
        "__LABEL_BODY__": body.rstrip("\n"), "__ACTIVATION__": activation, "__OUTPUT__": output,
    }  # fmt: skip
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make new-model", description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--task", choices=sorted(TASKS), default="binary_classification")
    p.add_argument("--owner", default="data-science")
    p.add_argument("--description", default="A new model (edit this description).")
    p.add_argument("--no-install", action="store_true", help="write the files only (no suite)")
    p.add_argument("--repo", type=Path, default=REPO, help=argparse.SUPPRESS)  # tests: elsewhere
    args = p.parse_args(argv)
    repo: Path = args.repo
    if not NAME.fullmatch(args.name):
        p.error(f"NAME {args.name!r}: use 3-40 of a-z, 0-9 and _, starting with a letter")
    if len(args.description) > 72 or '"' in args.description or "\n" in args.description:
        p.error("--description: one line of at most 72 characters, without double quotes")
    targets = {repo / t.format(name=args.name): TEMPLATE / s for s, t in FILES.items()}
    taken = [str(t.relative_to(repo)) for t in targets if t.exists()]
    if taken or (repo / "models" / args.name).exists():
        p.error(f"{args.name} exists already ({', '.join(taken) or 'models/' + args.name}): "
                "nothing was written")  # fmt: skip
    for target, source in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(source.read_text(), args))
    if not args.no_install:
        install(args.name)
    for target in sorted(targets):
        print(f"  wrote {target.relative_to(repo)}")
    print(f"next: edit models/{args.name}/mlmodels/{args.name}/features.py, then "
          f"`make run MODEL={args.name}`")  # fmt: skip
    return 0


def install(name: str) -> None:
    """Install the package editable into the workload venv, then write its suite from its schema."""
    uv = REPO / ".tools" / "uv" / "bin" / "uv"
    uv_cmd = [str(uv)] if uv.exists() else ["uv"]
    env_args = ["pip", "install", "-q", "--no-deps", "--python", str(STEPS_PY)]
    subprocess.run([*uv_cmd, *env_args, "-e", str(REPO / "models" / name)], check=True)
    suite = REPO / "models" / name / "mlmodels" / name / "expectations.json"
    subprocess.run(
        [str(STEPS_PY), "-m", "model_steps.expectations", f"mlmodels.{name}", str(suite)],
        check=True,
    )


if __name__ == "__main__":
    sys.exit(main())
