"""A database as written before run identities, for the runs and the dashboard tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import schema
from engine.store.sqlite_store import SqliteStore


def open_legacy_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> SqliteStore:
    """A database as written before run identities (every migration but
    ``0005_run_identity``), holding one shadow run row ``run-old``; still open."""
    old = [m for m in schema.migrations._migrations if m.name != "0005_run_identity"]
    with monkeypatch.context() as patch:
        patch.setattr(schema.migrations, "_migrations", old)
        store = SqliteStore.open(db)
    store.connection.execute(
        "INSERT INTO runs (run_id, command, mode, started_wall_ns) VALUES ('run-old', 'run',"
        " 'shadow', 1)")
    return store
