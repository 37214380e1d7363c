"""Supply chain: every step image installs its third-party packages only from a hashed lock that is
derived from the workload lock (tools/lock_images.py), and nothing drifts between them.

Fails when an image lock is stale (a package set or version that images/steps/pyproject.toml's extras
and images/steps/requirements.lock no longer give), when a pin has no hash, or when a Dockerfile
installs anything that is not a lock (with --require-hashes) or the platform's own source (with
--no-deps --no-build-isolation). At build time pip itself then refuses any package, version or file
the lock does not name.
"""

from __future__ import annotations

import re
import sys
import tomllib

import pytest
from delivery_helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "ci"))
import lock_images
from model_images import models_with_extras

WORKLOAD = lock_images.WORKLOAD_LOCK.read_text()


def entries(text: str) -> dict[str, dict]:
    """{name: {"version", "hashes", "via"}} of a uv-compiled lock file."""
    found, current = {}, None
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if pin:
            current = lock_images.normalize(pin.group(1))
            found[current] = {"version": pin.group(2), "hashes": [], "via": []}
            continue
        if current is None:
            continue
        found[current]["hashes"] += re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        via = re.match(r"^\s+#\s+(?:via\s+)?(.+)$", line)
        if via and via.group(1) != "via":
            found[current]["via"].append(via.group(1).split(" (")[0].strip())
    return found


def closure(extras: tuple[str, ...]) -> set[str]:
    """The packages an image needs: the workload package's base requirements and those of its
    extras, and everything they depend on in the workload lock's dependency graph."""
    project = tomllib.loads(lock_images.PYPROJECT.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    roots = {lock_images.normalize(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in wanted}
    children: dict[str, set[str]] = {}
    for name, entry in entries(WORKLOAD).items():
        for parent in entry["via"]:
            children.setdefault(lock_images.normalize(parent), set()).add(name)
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += children.get(name, ())
    return seen


@pytest.mark.parametrize("kind", sorted(lock_images.IMAGE_EXTRAS))
def test_image_lock_is_the_workload_lock_restricted_to_the_images_extras(kind):
    lock = entries(lock_images.image_lock(kind).read_text())
    workload = entries(WORKLOAD)
    expected = closure(lock_images.IMAGE_EXTRAS[kind]) - set(lock_images.NOT_IN_IMAGE.get(kind, ()))
    assert set(lock) == expected, (
        f"images/{kind}/requirements.lock is stale (run `make lock`): "
        f"missing {sorted(expected - set(lock))}, extra {sorted(set(lock) - expected)}"
    )
    for name, entry in lock.items():
        assert entry["version"] == workload[name]["version"], (kind, name)
        assert entry["hashes"], f"images/{kind}/requirements.lock: {name} has no hash"


def test_single_package_locks_pin_the_workload_versions_with_hashes():
    for path, pins in lock_images.pinned_locks().items():
        lock = entries(path.read_text())
        assert {n: e["version"] for n, e in lock.items()} == pins, path
        assert all(e["hashes"] for e in lock.values()), path
    makefile = (REPO / "Makefile").read_text()
    assert f"HOROVOD_VERSION := {lock_images.HOROVOD_VERSION}" in makefile


def test_every_model_with_its_own_requirements_has_a_hashed_lock():
    for model, requirements in models_with_extras(REPO / "models").items():
        lock = entries(lock_images.model_lock(model).read_text())
        names = {
            lock_images.normalize(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements
        }
        assert names <= set(lock), model
        assert all(e["hashes"] for e in lock.values()), model


def pip_installs(dockerfile: str) -> list[str]:
    """Every pip install command of a Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    return [m.group(0) for m in re.finditer(r"pip install[^&\n]*", text)]


@pytest.mark.parametrize("kind", [*sorted(lock_images.IMAGE_EXTRAS), "model"])
def test_dockerfiles_install_only_locks_and_own_source(kind):
    dockerfile = (REPO / "images" / kind / "Dockerfile").read_text()
    installs = pip_installs(dockerfile)
    assert installs, kind
    for command in installs:
        args = command.split()[2:]
        if "--require-hashes" in args:
            assert "--no-deps" in args, command
            files = [args[i + 1] for i, a in enumerate(args) if a == "-r"]
            assert files and len(files) == sum(not a.startswith("-") for a in args), command
        else:
            assert {"--no-deps", "--no-build-isolation"} <= set(args), command
            sources = [a for a in args if not a.startswith("-")]
            assert sources and all(a.strip('"').startswith("/src/") for a in sources), command
    if kind != "model":
        assert f"COPY images/{kind}/requirements.lock" in dockerfile or (
            kind == "train" and "COPY images/train/requirements.lock" in dockerfile
        )
        assert "COPY images/steps/build.lock" in dockerfile
