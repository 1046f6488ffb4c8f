"""Docs that match the code: every config key and every command is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.commands import COMMANDS
from engine.config import Config, config_to_builtins

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
KEYS = [
    f"{section}.{key}"
    for section, values in config_to_builtins(Config()).items()
    for key in values
]


@pytest.mark.parametrize("key", KEYS)
def test_readme_documents_config_key(key: str) -> None:
    assert f"`{key}`" in README


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_documents_command(command: str) -> None:
    assert f"`hybrid-engine {command}" in README


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/test" in README
    assert "bash scripts/test" in ci.splitlines()


def test_architecture_doc_names_every_channel_constant() -> None:
    from engine import runtime

    doc = (REPO / "docs" / "architecture.md").read_text()
    for name in ("TICK_QUEUE_BATCHES", "DECISION_QUEUE_BATCHES", "RECORD_QUEUE_BATCHES"):
        assert name in doc
        assert f"{getattr(runtime, name)} batches" in doc
