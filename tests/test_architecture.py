"""The functional core stays pure: it imports nothing from the shell."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "engine" / "core"
FORBIDDEN = {
    "trio", "trio_websocket", "trio_util", "sqlite3", "sqlite_utils", "socket", "time",
    "datetime", "random", "os", "logging", "asyncio", "threading", "subprocess", "httpx",
    "engine.logs", "engine.runtime", "engine.store", "engine.adapters", "engine.counters",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.AsyncFunctionDef | ast.Await):
            names.add("<async>")
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_from_the_shell(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if name == "<async>" or any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not bad, f"{path.name} reaches into the shell: {sorted(bad)}"


def test_core_scan_sees_the_core_modules() -> None:
    names = {p.name for p in CORE.glob("*.py")}
    assert {"events.py", "strategy.py"} <= names
