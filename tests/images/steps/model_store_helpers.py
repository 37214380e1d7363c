"""Helpers of the model-store tests (one per format): a private copy of a saved model directory,
and the attacker who rewrites the files *and* the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from model_steps import model_store
from model_steps.model_store import IoSpec


def copy_saved(saved: tuple[Path, str], tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved[0], tmp_path / "model"))


def reseal(directory: Path, **changes: str) -> str:
    """An attacker who rewrites the manifest too: consistent hashes, a new digest (returned)."""
    manifest = json.loads((directory / model_store.MANIFEST_FILE).read_text())
    manifest.update(changes)
    files = {p.name: model_store.sha256_file(str(p)) for p in directory.iterdir()
             if p.name != model_store.MANIFEST_FILE}  # fmt: skip
    io = IoSpec(**manifest["io"])
    manifest["files"] = files
    manifest["digest"] = model_store.content_digest(manifest["format"], manifest["model"],
                                                    manifest["task"], io, files)  # fmt: skip
    (directory / model_store.MANIFEST_FILE).write_text(json.dumps(manifest))
    return manifest["digest"]
