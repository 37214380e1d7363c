"""Parse-time checks of the model a DAG module names, without importing it.

The scheduler must not import model code (it imports TensorFlow, Spark…), but a model package that
is missing or does not even compile should break its own DAG file at parse time, with the module
and the model named, not fail the first task of every customer. So, where the model sources are
beside the DAGs (``models/<name>/`` in a checkout or in the git-sync branch; ``MLOPS_MODELS_PATH``
overrides), the import path is *located* in them and every Python file of the package is
*compiled* (``compile()``, never executed). Where no sources are present (an Airflow deployment
that ships DAGs only), only the form of the path is checked, and the step reports a missing package
at run time (exit 2, not retried).

Results are cached per package by the files' modification times, so a parse loop costs a stat.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from mlplatform_contract.environment import control_plane

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_MODELS_PATH = "MLOPS_MODELS_PATH"


class ModelPackageError(ValueError):
    """The named model package is missing or does not compile; the message says where."""


def models_root() -> Path:
    return control_plane().models_path or REPO_ROOT / "models"


def locate(module: str, root: Path) -> Path | None:
    """The package directory (or module file) of ``module`` in any ``root/<dist>/`` source tree."""
    parts = module.split(".")
    for dist in sorted(p for p in root.iterdir() if p.is_dir()):
        base = dist.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return base
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
    return None


def check_model_ref(ref: str) -> None:
    """Raise ModelPackageError when the sources are here and the package is missing or broken."""
    root = models_root()
    module = ref.partition(":")[0]
    if "." not in module or not root.is_dir():
        return  # an entry-point name, or a deployment without model sources: checked at run time
    where = locate(module, root)
    if where is None:
        dists = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "none"
        raise ModelPackageError(
            f"model {ref!r}: no package {module} in {root} (model packages there: {dists}); "
            "create it with `make new-model NAME=<name>` or fix the import path"
        )
    files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
    _compile_all(tuple((str(f), f.stat().st_mtime_ns) for f in files), ref)


@cache
def _compile_all(files: tuple[tuple[str, int], ...], ref: str) -> None:
    for path, _mtime in files:
        try:
            compile(Path(path).read_text(encoding="utf-8"), path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise ModelPackageError(
                f"model {ref!r} does not compile: {exc.filename}:{exc.lineno}: {exc.msg}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelPackageError(f"model {ref!r}: cannot read {path}: {exc}") from None
