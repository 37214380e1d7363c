#!/usr/bin/env python3
"""Write dags/image_manifest.json: the step-image digests the DAG factory pins pods to.

Used by the `image-manifest` CI job after the kaniko builds. Each build job leaves
`<digests-dir>/<kind>` holding the pushed image's digest (kaniko --digest-file). Kinds not rebuilt in
this pipeline keep their digest from the previous manifest (the one on the deploy branch). The result
must name all six kinds by digest, or the job fails: the DAG factory rejects tags and `:latest`.

Models with extra requirements get their own step images (ci/model_images.py generates their build
jobs): each leaves `<model-digests-dir>/<model>/<kind>`, and the manifest's `models` section maps
`model -> {kind: ref}` (repository `mlops/models/<model>/<kind>`); models not rebuilt keep their
previous entries, and a model whose directory is gone (models/<name> deleted) is dropped.

    python ci/image_manifest.py --registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com \
        --commit "$CI_COMMIT_SHA" --digests .ci/digests --previous prev.json --out dags/image_manifest.json

Stdlib only: runs in any python image.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

KINDS = ("ingest", "validate", "train", "evaluate", "score", "publish")
SCHEMA_VERSION = 1
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REGISTRY_RE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
REF_RE = re.compile(r"^(?P<registry>[^/]+)/mlops/(?P<kind>[a-z]+)@(?P<digest>sha256:[0-9a-f]{64})$")
MODEL_REF_RE = re.compile(
    r"^(?P<registry>[^/]+)/mlops/models/(?P<model>[a-z0-9_]+)/(?P<kind>[a-z]+)"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)


class ManifestError(Exception):
    """The manifest cannot be produced without guessing."""


def image_ref(registry: str, kind: str, digest: str) -> str:
    return f"{registry}/mlops/{kind}@{digest}"


def read_previous(path: pathlib.Path | None) -> dict[str, str]:
    """Image references of the previous manifest; {} when there is none (first deploy)."""
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return {}
    data = json.loads(path.read_text())
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"previous manifest {path} has schema_version {data.get('schema_version')!r}"
        )
    images = data.get("images") or {}
    for kind, ref in images.items():
        if not REF_RE.match(ref):
            raise ManifestError(f"previous manifest entry {kind}={ref!r} is not a digest reference")
    return dict(images)


def read_new_digests(directory: pathlib.Path) -> dict[str, str]:
    digests: dict[str, str] = {}
    if not directory.is_dir():
        return digests
    for entry in sorted(directory.iterdir()):
        if entry.name not in KINDS:
            raise ManifestError(f"unexpected digest file {entry} (kinds: {', '.join(KINDS)})")
        digest = entry.read_text().strip()
        if not DIGEST_RE.match(digest):
            raise ManifestError(f"{entry} does not hold a sha256 digest: {digest!r}")
        digests[entry.name] = digest
    return digests


def model_image_ref(registry: str, model: str, kind: str, digest: str) -> str:
    return f"{registry}/mlops/models/{model}/{kind}@{digest}"


def read_model_digests(directory: pathlib.Path | None) -> dict[str, dict[str, str]]:
    """``<dir>/<model>/<kind>`` digest files of this pipeline's model-image builds."""
    found: dict[str, dict[str, str]] = {}
    if directory is None or not directory.is_dir():
        return found
    for model_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        found[model_dir.name] = read_new_digests(model_dir)
    return found


def read_previous_models(path: pathlib.Path | None) -> dict[str, dict[str, str]]:
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return {}
    models = json.loads(path.read_text()).get("models") or {}
    for model, images in models.items():
        for kind, ref in images.items():
            if not MODEL_REF_RE.match(ref):
                raise ManifestError(
                    f"previous manifest entry {model}/{kind}={ref!r} is not a digest"
                )
    return models


def model_images(
    registry: str,
    new: dict[str, dict[str, str]],
    previous: dict[str, dict[str, str]],
    present: set[str] | None,
) -> dict[str, dict[str, str]]:
    """This pipeline's model images over the previous ones; models no longer present dropped."""
    merged = {m: dict(v) for m, v in previous.items() if present is None or m in present}
    for model, digests in new.items():
        merged.setdefault(model, {}).update(
            {kind: model_image_ref(registry, model, kind, d) for kind, d in digests.items()}
        )
    return {m: v for m, v in sorted(merged.items()) if v}


def build_manifest(
    registry: str, commit: str, new: dict[str, str], previous: dict[str, str]
) -> dict:
    if not REGISTRY_RE.match(registry):
        raise ManifestError(f"registry {registry!r} is not an ECR registry host")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ManifestError(f"commit {commit!r} is not a full git sha")
    images: dict[str, str] = {}
    missing = []
    for kind in KINDS:
        if kind in new:
            images[kind] = image_ref(registry, kind, new[kind])
        elif kind in previous:
            match = REF_RE.match(previous[kind])
            if match is None or match["registry"] != registry or match["kind"] != kind:
                raise ManifestError(
                    f"previous entry {kind}={previous[kind]!r} does not belong to {registry}/mlops/{kind}"
                )
            images[kind] = previous[kind]
        else:
            missing.append(kind)
    if missing:
        raise ManifestError(
            f"no digest for {', '.join(missing)}: not built in this pipeline and not in the "
            "previous manifest (run the pipeline with BUILD_ALL_IMAGES=true for a first deploy)"
        )
    return {"schema_version": SCHEMA_VERSION, "commit": commit, "images": images}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--digests", type=pathlib.Path, required=True)
    parser.add_argument("--previous", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--model-digests", type=pathlib.Path, help="<dir>/<model>/<kind> files")
    parser.add_argument(
        "--models-dir", type=pathlib.Path, help="models/ of this commit (drops deleted models)"
    )
    args = parser.parse_args(argv)
    try:
        manifest = build_manifest(
            args.registry, args.commit, read_new_digests(args.digests), read_previous(args.previous)
        )
        present = (
            {p.name for p in args.models_dir.iterdir() if p.is_dir()} if args.models_dir else None
        )
        models = model_images(
            args.registry,
            read_model_digests(args.model_digests),
            read_previous_models(args.previous),
            present,
        )
        if models:
            manifest["models"] = models
    except (ManifestError, json.JSONDecodeError) as exc:
        print(f"image manifest: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(args.out)
    for kind, ref in manifest["images"].items():
        print(f"{kind:9s} {ref}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
