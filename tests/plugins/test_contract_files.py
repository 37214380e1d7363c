"""mlplatform_contract.files.write_private_json: the one writer of the platform's secret JSON files
(the embedded MLflow admin's password, the step identities' passwords)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mlplatform_contract.files import write_private_json


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_file_is_its_owners_only_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "auth" / "admin.json"  # the parent folder is created
    old = os.umask(0)
    try:
        write_private_json(target, {"username": "admin", "password": "s3cret"})
    finally:
        os.umask(old)
    assert mode(target) == 0o600, oct(mode(target))
    assert json.loads(target.read_text()) == {"username": "admin", "password": "s3cret"}


def test_a_rewrite_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "identities.json"
    write_private_json(target, {"b": "2", "a": "1"}, indent=1, sort_keys=True)
    assert target.read_text() == '{\n "a": "1",\n "b": "2"\n}'
    with target.open() as reader:  # a reader that opened the old file keeps reading it whole
        first = target.stat().st_ino
        write_private_json(target, {"a": "3"})
        assert json.load(reader) == {"a": "1", "b": "2"}
    assert target.stat().st_ino != first  # a new file renamed over the old, not rewritten in place
    assert json.loads(target.read_text()) == {"a": "3"}
    assert mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["identities.json"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "identities.json"
    write_private_json(target, {"a": "1"})
    with pytest.raises(TypeError):  # json.dump has written "{"a": "2", " when it meets the object
        write_private_json(target, {"a": "2", "b": object()})
    assert json.loads(target.read_text()) == {"a": "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["identities.json"]
    with pytest.raises(TypeError):
        write_private_json(tmp_path / "new.json", {"b": object()})
    assert not (tmp_path / "new.json").exists()
