"""The image manifest: which image, pinned by digest, each step kind runs in the cluster.

GitLab CI builds the step images on merge and publishes ``dags/image_manifest.json``; an operator can
pin other digests with the Airflow Variable ``mlops_image_manifest`` (same JSON) without a deploy.
A model that declares extra Python requirements gets step images of its own: the manifest's
optional ``models`` section maps ``<model name> -> {step: ref}``, and a step of that model runs its
image where one is listed, else the shared step image.
Pods must never run a moving tag: a missing entry, ``:latest`` or a tag without a digest stops the
DAG file at parse time with a message saying which step and which manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mlplatform_contract.environment import control_plane
from mlplatform_contract.steps import STEP_KINDS, StepKind

MANIFEST_VARIABLE = "mlops_image_manifest"
MANIFEST_PATH_ENV = "MLOPS_IMAGE_MANIFEST"
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "dags" / "image_manifest.json"
_DIGEST_REF = re.compile(r"^(?P<repo>[a-z0-9][a-z0-9._/:-]*[a-z0-9])@sha256:[0-9a-f]{64}$")


class ImageManifestError(ValueError):
    pass


@dataclass(frozen=True)
class ImageManifest:
    source: str
    images: dict[str, str]
    commit: str | None = None
    models: dict[str, dict[str, str]] = field(default_factory=dict)

    def image_for(self, step: StepKind, model: str | None = None) -> str:
        """The model's own image for ``step`` when the manifest lists one, else the shared one."""
        own = self.models.get(model or "", {}).get(step)
        if own is not None:
            return self._pinned(own, f"model {model!r} step {step!r}")
        ref = self.images.get(step)
        if ref is None:
            raise ImageManifestError(
                f"image manifest {self.source} has no image for step {step!r} "
                f"(it lists: {', '.join(sorted(self.images)) or 'nothing'}); "
                "CI publishes one entry per step image"
            )
        return self._pinned(ref, f"step {step!r}")

    def _pinned(self, ref: str, what: str) -> str:
        if _DIGEST_REF.match(ref):
            return ref
        if ref.endswith(":latest") or ":latest@" in ref:
            why = "uses the moving tag ':latest'"
        elif "@" not in ref:
            why = "is a tag without a digest"
        else:
            why = "is not of the form <repository>@sha256:<64 hex digits>"
        raise ImageManifestError(
            f"image manifest {self.source}: {what} image {ref!r} {why}; pods run images "
            "pinned by digest only (CI writes repo@sha256:… after pushing)"
        )


def parse_manifest(text: str, source: str) -> ImageManifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImageManifestError(f"image manifest {source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise ImageManifestError(
            f'image manifest {source} must be {{"schema_version": 1, "images": {{step: ref}}}}'
        )
    models = data.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ImageManifestError(
            f'image manifest {source}: "models" must map model -> {{step: ref}}'
        )
    named = set(data["images"]).union(*(set(v) for v in models.values()))
    unknown = sorted(named - set(STEP_KINDS))
    if unknown:
        raise ImageManifestError(
            f"image manifest {source} names unknown steps {unknown}; steps are {list(STEP_KINDS)}"
        )
    return ImageManifest(
        source=source,
        images=dict(data["images"]),
        commit=data.get("commit"),
        models={k: dict(v) for k, v in models.items()},
    )


@lru_cache(maxsize=1)
def load_manifest() -> ImageManifest:
    """The Airflow Variable if set, else the manifest file shipped with the DAGs (read once)."""
    from airflow.sdk import Variable

    override = Variable.get(MANIFEST_VARIABLE, default=None)
    if override:
        text = override if isinstance(override, str) else json.dumps(override)
        return parse_manifest(text, f"Airflow Variable {MANIFEST_VARIABLE!r}")
    path = control_plane().image_manifest or Path(DEFAULT_MANIFEST)
    if not path.is_file():
        raise ImageManifestError(
            f"no image manifest at {path}: the kubernetes runtime needs one (GitLab CI publishes it "
            f"on merge; or set the Airflow Variable {MANIFEST_VARIABLE!r} or {MANIFEST_PATH_ENV})"
        )
    return parse_manifest(path.read_text(), str(path))
