"""Evaluate CEL expressions against objects with cel-python (celpy) and print the verdicts as JSON.

Runs in .venv-delivery (requirements-delivery.txt pins cel-python). stdin: {"expressions": [...],
"objects": [...]} where each object is the admission request's `object`; stdout: one list per object
with, per expression, true / false, or the error text when the expression does not evaluate (an
expression that errors denies in the API server with failurePolicy Fail). Called by
test_delivery_admission.py.
"""

from __future__ import annotations

import json
import sys

import celpy


def main() -> int:
    request = json.load(sys.stdin)
    env = celpy.Environment()
    programs = [env.program(env.compile(expr)) for expr in request["expressions"]]
    verdicts = []
    for obj in request["objects"]:
        activation = {"object": celpy.json_to_cel(obj)}
        row = []
        for program in programs:
            try:
                result = program.evaluate(activation)
            except celpy.CELEvalError as exc:
                row.append(f"error: {exc}")
                continue
            row.append(
                bool(result) if isinstance(result, celpy.celtypes.BoolType) else repr(result)
            )
        verdicts.append(row)
    json.dump(verdicts, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
