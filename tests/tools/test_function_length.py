"""No function over 60 lines in non-test code (the developer guide's rule), checked on the AST of
every source file outside tests/: a new long function fails with file:function:length. ruff's
PLR0915 counts statements, not lines, so this is the check.

LONGER holds the functions still over the limit when the check came in, each with its length
today: the list only shrinks (a listed function that grew, or got short and is still listed, fails
too, so the list stays true)."""

from __future__ import annotations

import ast

from conftest import REPO

LIMIT = 60
ROOTS = ("plugins", "images/steps/model_steps", "dags", "scripts", "embedded", "tools", "models",
         "benchmarks")  # fmt: skip
LONGER = {}


def function_lengths() -> dict[str, int]:
    """file:function -> lines (decorators excluded) of every function over LIMIT lines."""
    found = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if "/tests/" in f"/{rel}" or path.name.startswith("test_") or ".egg-info" in rel:
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > LIMIT:
                        found[f"{rel}:{node.name}"] = length
    return found


def test_no_function_over_60_lines() -> None:
    found = function_lengths()
    new = {k: v for k, v in found.items() if k not in LONGER}
    assert not new, "functions over 60 lines (split them into named parts):\n" + "\n".join(
        f"  {name}: {length} lines" for name, length in sorted(new.items())
    )
    grown = {k: (found[k], v) for k, v in LONGER.items() if k in found and found[k] > v}
    assert not grown, f"listed functions that grew (now, listed): {grown}"
    fixed = sorted(k for k in LONGER if k not in found)
    assert not fixed, f"no longer over {LIMIT} lines: remove from LONGER: {fixed}"
