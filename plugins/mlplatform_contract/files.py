"""Files that hold secrets: written readable by their owner only, and atomically.

The embedded platform's MLflow admin password (``embedded/services.py``) and the step identities'
passwords (``model_steps.registry_admin``) are JSON files that a reader may open at any moment: a
reader sees the old file or the new one, never half of one, and never a moment of a wider mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_private_json(
    path: Path, data: Any, *, indent: int | None = None, sort_keys: bool = False
) -> None:
    """Write ``data`` as JSON to ``path``, mode 0600, atomically (the parent folder is created).

    The JSON goes to a temporary file beside ``path`` (``mkstemp`` creates it 0600, so the secret
    is never readable by others), is flushed to disk, then replaces ``path``; on any error the
    temporary file is removed and ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=indent, sort_keys=sort_keys)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
