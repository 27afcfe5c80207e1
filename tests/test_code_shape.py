"""The shape a newcomer can hold: no function in ``monitor/`` over 80 lines, no class over 300 (ruff's C901
bounds cyclomatic complexity at 25, see pyproject.toml), and every module says in its docstring what it owns."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 300


def modules() -> list[Path]:
    return sorted(p for p in (ROOT / "monitor").rglob("*.py") if "migrations/versions" not in p.as_posix())


def test_no_long_functions_or_classes() -> None:
    too_long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            limit = (MAX_FUNCTION_LINES if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     else MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else None)
            if limit is not None and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                f"{node.end_lineno - node.lineno + 1} lines (limit {limit})")
    assert too_long == []


def test_every_module_says_what_it_owns() -> None:
    missing = [str(p.relative_to(ROOT)) for p in modules()
               if p.name not in ("__init__.py", "__main__.py") and not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []
