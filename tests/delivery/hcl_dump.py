"""Parse every .tf file under a directory with python-hcl2 and print {relative path: parsed} as JSON.

Runs in .venv-delivery with PYTHONPATH=.venv-delivery/hcl2-lib (python-hcl2 kept apart from checkov's
bc-python-hcl2, which owns the same import name). Called by test_delivery_terraform.py.
"""

from __future__ import annotations

import json
import pathlib
import sys

import hcl2
from hcl2.utils import SerializationOptions

# Plain values ("NO_SCHEDULE", not '"NO_SCHEDULE"'), no block markers or comments: data to assert on.
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def main(root: str) -> int:
    base = pathlib.Path(root)
    out = {}
    for path in sorted(base.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        with path.open() as fh:
            out[str(path.relative_to(base))] = hcl2.load(fh, serialization_options=OPTIONS)
    json.dump(out, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
