"""Where a benchmark's figures go: one JSON file per benchmark under benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write(path: Path, result: dict[str, Any]) -> None:
    """Write the figures (folders made as needed) and say where, as the last line of the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
