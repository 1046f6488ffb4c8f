"""The layout's rules (docs/architecture.md "Parts and arrows"), read statically with ``ast``.

Every rule is a function of a package folder, so each is shown to fail on a tiny
fake package built in ``tmp_path`` with one deliberate violation (the
``test_checker_*`` tests), and then run on ``engine/``. The import graph counts
every import, also those inside functions and under ``TYPE_CHECKING``: a lazy
import is still an arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
ENGINE: Final = ROOT / "engine"
TESTS: Final = ROOT / "tests"


KERNEL: Final = frozenset(
    {"__init__", "__main__", "app", "cli", "ports", "exits", "logs", "counters"}
)
"""The only modules loose in ``engine/``."""

PARTS: Final = frozenset(
    {"config", "core", "adapters", "runtime", "store", "proof", "dashboard", "commands"}
)
"""The only packages directly in ``engine/``."""

CORE_MAY_IMPORT: Final = ("engine.core", "engine.config.schema", "engine.config.bounds")
"""What the pure core may import of the engine (the config schema: enums, frozen sections)."""

CORE_FORBIDDEN_STDLIB: Final = frozenset({
    "trio", "trio_websocket", "trio_util", "sqlite3", "sqlite_utils", "socket", "time",
    "datetime", "random", "os", "logging", "asyncio", "threading", "subprocess", "httpx",
})

TESTS_NOT_A_PART: Final = frozenset({"e2e", "fakes", "data", "strategies"})
"""The folders of ``tests/`` that mirror no part: whole-engine runs, shared test parts, inputs."""

TESTS_MAY_IMPORT: Final = ("tests.fakes", "tests.strategies")
"""What of ``tests`` a test module may import: the shared parts and the sample strategies."""

REPO_CHECKS: Final = frozenset({"test_architecture", "test_docs", "test_lock"})
"""The repository's own checks: flat in ``tests/`` with the kernel's tests."""

SHARED_ADAPTERS: Final = (
    "engine.adapters.link", "engine.adapters.backoff", "engine.adapters.progress"
)
"""What both the market feed and the LIVE package run: the one reconnecting link and its
pieces (docs/architecture.md "Reconnecting"). They lie below both, so they import neither."""

STREAM_PACKAGES: Final = ("engine.adapters.market", "engine.adapters.binance_spot")

LIVE_PACKAGE: Final = "engine.adapters.binance_spot"
LIVE_ENTRY: Final = "engine.runtime.live"
"""LIVE orchestration: it may import the LIVE package, and only ``app`` imports it."""


# --------------------------------------------------------------------- the graph


def module_name(root: Path, path: Path) -> str:
    """``root/engine/a/b.py`` -> ``engine.a.b``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name."""
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path) -> Iterator[str]:
    """Every dotted name ``path`` imports (absolute; relative imports resolved), anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``from p import m`` counts as ``p.m``).

    An edge goes to the deepest existing module a name lies in, so importing
    ``engine.a.b.Thing`` is an arrow to ``engine.a.b``, not to the package ``engine.a``.
    """
    mods = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets: set[str] = set()
        for raw in imports_of(name, path):
            imported = raw
            while imported and imported not in mods:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    # ``from engine.a import b`` yields both ``engine.a`` and ``engine.a.b``: keep the deeper one
    for targets in graph.values():
        targets -= {t for t in set(targets) if any(u.startswith(t + ".") for u in targets)}
    return graph


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# --------------------------------------------------------------------- the rules


def arrows_from_to(graph: dict[str, set[str]], source: str, target: str) -> list[str]:
    """Every arrow from a module in ``source`` to one in ``target``, as ``a -> b``."""
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if inside(a, source)
        for b in targets
        if inside(b, target)
    )


def core_violations(root: Path, may_import: Iterable[str] = CORE_MAY_IMPORT) -> list[str]:
    """The core imports no shell module and no I/O library, and defines no coroutine.

    A parent package of an allowed module (``from engine.config import schema``
    reads ``engine.config``) is fine: packages hold nothing (``shim_violations``).
    """
    pkg = root.name
    core = f"{pkg}.core"
    allowed = tuple(a.replace("engine", pkg, 1) for a in may_import)
    bad: list[str] = []
    for name, path in modules(root).items():
        if not inside(name, core):
            continue
        for imported in imports_of(name, path):
            top = imported.split(".")[0]
            if top in CORE_FORBIDDEN_STDLIB or (
                top == pkg
                and not any(inside(imported, a) or inside(a, imported) for a in allowed)
            ):
                bad.append(f"{name} -> {imported}")
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.AsyncFunctionDef | ast.Await) for n in ast.walk(tree)):
            bad.append(f"{name} defines a coroutine")
    return sorted(set(bad))


def forbidden_arrows(root: Path) -> list[str]:
    """Adapters never import the runtime; the dashboard never the runtime nor the adapters.

    And the runtime (which writes the heartbeats) never imports the dashboard (which
    reads them): a fact both need lives below both, in the core or the store.
    """
    pkg = root.name
    graph = import_graph(root)
    return (
        arrows_from_to(graph, f"{pkg}.adapters", f"{pkg}.runtime")
        + arrows_from_to(graph, f"{pkg}.runtime", f"{pkg}.dashboard")
        + arrows_from_to(graph, f"{pkg}.dashboard", f"{pkg}.runtime")
        + arrows_from_to(graph, f"{pkg}.dashboard", f"{pkg}.adapters")
    )


def shared_violations(root: Path) -> list[str]:
    """The shared link (and backoff, progress) imports neither stream that runs it."""
    pkg = root.name
    graph = import_graph(root)
    return sorted(
        arrow
        for shared in SHARED_ADAPTERS
        for stream in STREAM_PACKAGES
        for arrow in arrows_from_to(
            graph, shared.replace("engine", pkg, 1), stream.replace("engine", pkg, 1)
        )
    )


def live_violations(root: Path) -> list[str]:
    """Only ``app`` (through LIVE orchestration) loads the LIVE package: SHADOW/PAPER never do."""
    pkg = root.name
    live = LIVE_PACKAGE.replace("engine", pkg, 1)
    entry = LIVE_ENTRY.replace("engine", pkg, 1)
    app = f"{pkg}.app"
    bad: list[str] = []
    for a, targets in import_graph(root).items():
        for b in targets:
            if inside(b, live) and not (inside(a, live) or a in (app, entry)):
                bad.append(f"{a} -> {b}")
            if b == entry and a != app:
                bad.append(f"{a} -> {b}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _is_dunder_metadata(stmt: ast.stmt) -> bool:
    """``__version__ = "1.0"``: package metadata, not a definition anyone imports instead."""
    return (
        isinstance(stmt, ast.Assign)
        and all(isinstance(t, ast.Name) and t.id.startswith("__") for t in stmt.targets)
        and isinstance(stmt.value, ast.Constant)
    )


def shim_violations(root: Path) -> list[str]:
    """An ``__init__.py`` holds a docstring and nothing else (no re-exports, no definitions).

    Only dunder metadata with a literal value (``__version__``) is allowed besides.
    """
    bad: list[str] = []
    for name, path in modules(root).items():
        if path.name != "__init__.py":
            continue
        body = ast.parse(path.read_text()).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        body = [s for s in body if not _is_dunder_metadata(s)]
        if body:
            bad.append(f"{name}: {len(body)} statement(s) beyond the docstring")
    return bad


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def alias_violations(root: Path) -> list[str]:
    """No module-level ``Old = imported`` alias and no ``__all__`` naming an imported name."""
    bad: list[str] = []
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text())
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.update(a.asname or a.name for a in node.names)
        for stmt in tree.body:
            value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
            targets = (
                stmt.targets if isinstance(stmt, ast.Assign)
                else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
            )
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if value is None:
                continue
            if "__all__" in names and isinstance(value, ast.List | ast.Tuple):
                exported = {
                    e.value for e in value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                }
                if exported & imported:
                    bad.append(f"{name}: __all__ re-exports {sorted(exported & imported)}")
            elif isinstance(value, ast.Name | ast.Attribute) and _root_name(value) in imported:
                bad.append(f"{name}: {', '.join(names)} = {ast.unparse(value)}")
    return bad


def prefix_violations(root: Path) -> list[str]:
    """No two modules in one folder share a name prefix (``feed_ws``, ``feed_ws_x``)."""
    bad: list[str] = []
    folders = {p.parent for p in root.rglob("*.py")}
    for folder in sorted(folders):
        stems = sorted(
            {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
            | {d.name for d in folder.iterdir() if (d / "__init__.py").is_file()}
        )
        by_head: dict[str, list[str]] = {}
        for stem in stems:
            by_head.setdefault(stem.split("_")[0], []).append(stem)
        bad.extend(
            f"{folder.relative_to(root.parent)}: {', '.join(group)}"
            for group in by_head.values()
            if len(group) > 1
        )
    return bad


def loose_violations(root: Path) -> list[str]:
    """Only the kernel is loose in the package; every folder in it is a part."""
    loose = {p.stem for p in root.glob("*.py")} - KERNEL
    parts = {d.name for d in root.iterdir() if any(d.rglob("*.py"))} - PARTS
    return sorted(f"loose module {m}" for m in loose) + sorted(f"unknown part {d}" for d in parts)


def _python_folders(root: Path) -> list[Path]:
    """Every folder below ``root`` that holds a ``.py`` file (caches skipped)."""
    return sorted(
        {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts} - {root}
    )


def mirror_violations(tests: Path, engine: Path) -> list[str]:
    """Every folder of ``tests/`` names a part of ``engine/`` that exists (``tests/store`` ->
    ``engine/store``), except the folders that mirror none; ``fakes/`` holds no test module."""
    bad: list[str] = []
    for folder in _python_folders(tests):
        rel = folder.relative_to(tests)
        if rel.parts[0] == "fakes":
            bad.extend(
                f"test module in fakes: {p.relative_to(tests.parent)}"
                for p in sorted(folder.glob("test_*.py"))
            )
        if rel.parts[0] in TESTS_NOT_A_PART:
            continue
        if not (engine / rel / "__init__.py").is_file():
            bad.append(f"{tests.name}/{rel.as_posix()} mirrors no part of {engine.name}/")
    return bad


def peer_import_violations(tests: Path, may_import: Iterable[str] = TESTS_MAY_IMPORT) -> list[str]:
    """No module of ``tests/`` imports another test module: shared parts live in ``fakes/``."""
    pkg = tests.name
    allowed = tuple(a.replace("tests", pkg, 1) for a in may_import)
    bad: set[str] = set()
    for name, path in modules(tests).items():
        for imported in imports_of(name, path):
            if (
                inside(imported, pkg)
                and imported != pkg
                and not any(inside(imported, a) or inside(a, imported) for a in allowed)
            ):
                bad.add(f"{name} -> {imported}")
    return sorted(bad)


def flat_test_violations(tests: Path) -> list[str]:
    """Flat in ``tests/``: only the kernel's tests (``test_exits``, ``test_logs_*``, ...) and
    the repository's checks; every other test lives in its part's folder."""
    kernel = {k for k in KERNEL if not k.startswith("__")}
    return sorted(
        f"flat test {p.relative_to(tests.parent)}"
        for p in tests.glob("test_*.py")
        if p.stem not in REPO_CHECKS
        and not any(p.stem == f"test_{k}" or p.stem.startswith(f"test_{k}_") for k in kernel)
    )


# --------------------------------------------------------------------- the checkers catch


def make_package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake ``engine`` package in ``tmp_path``: ``{"core/a.py": source}``, with ``__init__``s."""
    root = tmp_path / "engine"
    for rel, source in {"__init__.py": '"""Fake."""\n', **files}.items():
        path = root / rel
        for parent in reversed(path.relative_to(root).parents):
            init = root / parent / "__init__.py"
            init.parent.mkdir(parents=True, exist_ok=True)
            if not init.exists():
                init.write_text('"""Part."""\n')
        path.write_text(source)
    return root


def test_checker_catches_a_core_import_of_the_shell(tmp_path: Path) -> None:
    clean = make_package(tmp_path / "a", {
        "core/pure.py": (
            "from engine.core import other\nfrom engine.config.schema import Mode\n"
            "from engine.config import schema\n"
        ),
        "core/other.py": "import decimal\n",
        "config/schema.py": "",
    })
    assert core_violations(clean) == []
    dirty = make_package(tmp_path / "b", {
        "core/pure.py": (
            "def f():\n    from engine.store import db\n    import time\n"
            "from engine.config import load\n"
        ),
        "core/coro.py": "async def g():\n    pass\n",
        "store/db.py": "", "config/load.py": "",
    })
    assert core_violations(dirty) == [
        "engine.core.coro defines a coroutine",
        "engine.core.pure -> engine.config.load",
        "engine.core.pure -> engine.store",
        "engine.core.pure -> engine.store.db",
        "engine.core.pure -> time",
    ]


def test_checker_catches_forbidden_arrows(tmp_path: Path) -> None:
    root = make_package(tmp_path, {
        "adapters/feed.py": "from engine.runtime import pipeline\n",
        "dashboard/app.py": "def f():\n    import engine.runtime.pipeline\n",
        "dashboard/health.py": "from engine.adapters.feed import X\n",
        "runtime/pipeline.py": "from engine.adapters import feed\n",  # allowed: downwards
        "runtime/heartbeat.py": "from engine.dashboard.health import limit\n",
    })
    assert forbidden_arrows(root) == [
        "engine.adapters.feed -> engine.runtime.pipeline",
        "engine.runtime.heartbeat -> engine.dashboard.health",
        "engine.dashboard.app -> engine.runtime.pipeline",
        "engine.dashboard.health -> engine.adapters.feed",
    ]


def test_checker_catches_the_shared_link_importing_a_stream(tmp_path: Path) -> None:
    files = {
        "adapters/link/reconnect.py": "from engine.adapters import backoff\n",
        "adapters/backoff.py": "",
        "adapters/market/ws/stream.py": "from engine.adapters.link import reconnect\n",
        "adapters/binance_spot/user_stream.py": "from engine.adapters.link.reconnect import L\n",
    }
    assert shared_violations(make_package(tmp_path / "a", files)) == []
    files["adapters/link/session.py"] = (
        "def f():\n    from engine.adapters.market.ws import stream\n"
    )
    files["adapters/backoff.py"] = "import engine.adapters.binance_spot.user_stream\n"
    assert shared_violations(make_package(tmp_path / "b", files)) == [
        "engine.adapters.backoff -> engine.adapters.binance_spot.user_stream",
        "engine.adapters.link.session -> engine.adapters.market.ws.stream",
    ]


def test_checker_catches_a_live_import_outside_app(tmp_path: Path) -> None:
    files = {
        "app.py": "def run():\n    from engine.runtime import live\n",
        "runtime/live.py": "from engine.adapters.binance_spot import execution\n",
        "adapters/binance_spot/execution.py": "from engine.adapters.binance_spot import rest\n",
        "adapters/binance_spot/rest.py": "",
    }
    assert live_violations(make_package(tmp_path / "a", files)) == []
    files["runtime/pipeline.py"] = "from engine.adapters.binance_spot.rest import Client\n"
    files["commands/run.py"] = "import engine.runtime.live\n"
    assert live_violations(make_package(tmp_path / "b", files)) == [
        "engine.commands.run -> engine.runtime.live",
        "engine.runtime.pipeline -> engine.adapters.binance_spot.rest",
    ]


def test_checker_catches_a_cycle_also_through_a_function_local_import(tmp_path: Path) -> None:
    root = make_package(tmp_path, {
        "a.py": "from engine import b\n",
        "b.py": "def f():\n    from engine.c import x\n",
        "c.py": "import engine.a\n",
        "d.py": "from engine import a\n",  # into the circle, not part of it
    })
    assert cycles(import_graph(root)) == [["engine.a", "engine.b", "engine.c"]]
    (root / "c.py").write_text("")
    assert cycles(import_graph(root)) == []


def test_checker_catches_shims_and_aliases(tmp_path: Path) -> None:
    root = make_package(tmp_path, {
        "part/__init__.py": '"""Doc."""\nfrom engine.part.x import Thing\n',
        "part/x.py": "Thing = 1\n",
        "ok/__init__.py": '"""Doc."""\n__version__ = "1.0"\n',
        "bad/__init__.py": '"""Doc."""\n__all__ = ["x"]\n',
        "part/y.py": (
            "from engine.part.x import Thing\nfrom engine.part import x\n"
            "Old = Thing\nalso = x.Thing\nTyped: int = Thing\n__all__ = ['Thing']\n"
            "Fine = Thing + 1\nlocal = 2\nsame = local\n"
        ),
    })
    assert shim_violations(root) == [
        "engine.bad: 1 statement(s) beyond the docstring",
        "engine.part: 1 statement(s) beyond the docstring",
    ]
    assert alias_violations(root) == [
        "engine.part.y: Old = Thing",
        "engine.part.y: also = x.Thing",
        "engine.part.y: Typed = Thing",
        "engine.part.y: __all__ re-exports ['Thing']",
    ]


def test_checker_catches_a_shared_prefix_and_loose_modules(tmp_path: Path) -> None:
    root = make_package(tmp_path, {
        "adapters/feed_ws.py": "", "adapters/feed_ws_intake.py": "", "adapters/backoff.py": "",
        "adapters/market/stream.py": "",
        "core/paper.py": "", "core/paper_working.py": "",
        "app.py": "", "health.py": "", "gadgets/x.py": "", "core/ok.py": "",
    })
    assert prefix_violations(root) == [
        "engine/adapters: feed_ws, feed_ws_intake",
        "engine/core: paper, paper_working",
    ]
    assert loose_violations(root) == ["loose module health", "unknown part gadgets"]


def make_tests(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake ``tests`` tree in ``tmp_path`` beside a fake ``engine`` with a few parts."""
    make_package(tmp_path, {"store/task.py": "", "adapters/market/ws/stream.py": ""})
    root = tmp_path / "tests"
    for rel, source in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_checker_catches_a_test_folder_that_mirrors_no_part(tmp_path: Path) -> None:
    clean = make_tests(tmp_path / "a", {
        "store/test_task.py": "", "adapters/market/ws/test_stream.py": "",
        "e2e/test_cli.py": "", "fakes/exchange.py": "", "strategies/mine.py": "",
        "data/history/tool.py": "",
    })
    assert mirror_violations(clean, clean.parent / "engine") == []
    dirty = make_tests(tmp_path / "b", {
        "storage/test_task.py": "", "adapters/market/rest/test_x.py": "",
        "fakes/test_exchange.py": "",
    })
    assert mirror_violations(dirty, dirty.parent / "engine") == [
        "tests/adapters/market/rest mirrors no part of engine/",
        "test module in fakes: tests/fakes/test_exchange.py",
        "tests/storage mirrors no part of engine/",
    ]


def test_checker_catches_a_test_module_importing_another(tmp_path: Path) -> None:
    root = make_tests(tmp_path, {
        "fakes/exchange.py": "from tests.fakes import engine_process\n",
        "fakes/engine_process.py": "",
        "strategies/mine.py": "",
        "store/test_task.py": (
            "from tests.fakes.exchange import serve\nimport tests.strategies.mine\n"
            "from tests.fakes import engine_process\n"
        ),
        "store/test_rows.py": "def f():\n    from tests.store.test_task import helper\n",
        "store/test_schema.py": "from . import test_task\nimport tests.e2e.test_cli\n",
        "fakes/bad.py": "from tests.store import test_task\n",
        "e2e/test_cli.py": "",
    })
    assert peer_import_violations(root) == [
        "tests.fakes.bad -> tests.store",
        "tests.fakes.bad -> tests.store.test_task",
        "tests.store.test_rows -> tests.store.test_task",
        "tests.store.test_rows -> tests.store.test_task.helper",
        "tests.store.test_schema -> tests.e2e.test_cli",
        "tests.store.test_schema -> tests.store",
        "tests.store.test_schema -> tests.store.test_task",
    ]


def test_checker_catches_a_flat_test_of_a_part(tmp_path: Path) -> None:
    root = make_tests(tmp_path, {
        "test_exits.py": "", "test_logs_capture.py": "", "test_docs.py": "", "test_lock.py": "",
        "test_architecture.py": "", "conftest.py": "",
        "test_store_task.py": "", "test_exitsx.py": "",
    })
    assert flat_test_violations(root) == [
        "flat test tests/test_exitsx.py",
        "flat test tests/test_store_task.py",
    ]


# --------------------------------------------------------------------- the rules hold


def _ids(items: Iterable[object]) -> list[str]:
    return [str(i) for i in items]


def test_the_scan_sees_the_engine() -> None:
    graph = import_graph(ENGINE)
    assert len(graph) > 50
    assert "engine.core.events" in graph["engine.ports"]


def test_core_module_imports_nothing_from_the_shell() -> None:
    assert core_violations(ENGINE) == []


def test_no_forbidden_arrow() -> None:
    assert forbidden_arrows(ENGINE) == []


def test_the_shared_link_imports_no_stream() -> None:
    assert shared_violations(ENGINE) == []
    # ... and both streams run it (one reconnect loop, not two)
    graph = import_graph(ENGINE)
    assert "engine.adapters.link.reconnect" in graph["engine.adapters.market.ws.stream"]
    assert "engine.adapters.link.reconnect" in graph["engine.adapters.binance_spot.user_stream"]


def test_only_app_loads_the_live_package() -> None:
    assert live_violations(ENGINE) == []


def test_no_import_cycle() -> None:
    assert _ids(cycles(import_graph(ENGINE))) == []


def test_no_re_export_shim() -> None:
    assert shim_violations(ENGINE) == []


def test_no_alias_of_an_imported_name() -> None:
    assert alias_violations(ENGINE) == []


def test_no_two_modules_in_a_folder_share_a_prefix() -> None:
    assert prefix_violations(ENGINE) == []


def test_only_the_kernel_is_loose() -> None:
    assert loose_violations(ENGINE) == []


def test_the_scan_sees_the_tests() -> None:
    assert "tests.store.test_task" in modules(TESTS)
    assert "tests.fakes.fake_exchange" in set(import_graph(TESTS)["tests.fakes.hostile_venue"])


def test_every_test_folder_mirrors_a_part() -> None:
    assert mirror_violations(TESTS, ENGINE) == []


def test_no_test_module_imports_another() -> None:
    assert peer_import_violations(TESTS) == []


def test_only_the_kernel_and_the_repository_checks_are_flat() -> None:
    assert flat_test_violations(TESTS) == []
