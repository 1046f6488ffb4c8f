"""Docs that match the code: every config key, command and flag is documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import engine.runtime.pipeline
from engine.cli import COMMANDS as COMMAND_MODULES
from engine.cli import build_parser
from engine.config.load import config_to_builtins
from engine.config.schema import Config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
KEYS = [
    f"{section}.{key}"
    for section, values in config_to_builtins(Config()).items()
    for key in values
]

COMMANDS = tuple(m.__name__.rpartition(".")[2] for m in COMMAND_MODULES)


@pytest.mark.parametrize("key", KEYS)
def test_readme_documents_config_key(key: str) -> None:
    assert f"`{key}`" in README


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_documents_command(command: str) -> None:
    assert f"`hybrid-engine {command}" in README


def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _command_row(command: str) -> str:
    rows = [line for line in README.splitlines() if line.startswith(f"| `hybrid-engine {command}")]
    assert len(rows) == 1, f"README command table: {len(rows)} rows for {command}"
    return rows[0]


FLAGS = sorted(
    (command, flag)
    for command, parser in _subcommand_parsers().items()
    for action in parser._actions
    for flag in action.option_strings
    if flag.startswith("--") and flag != "--help"
)


def test_readme_table_rows_cover_every_command() -> None:
    assert set(_subcommand_parsers()) == set(COMMANDS)
    assert FLAGS  # the parser really exposes flags (guards the parametrisation below)


@pytest.mark.parametrize(("command", "flag"), FLAGS)
def test_readme_command_table_lists_every_flag(command: str, flag: str) -> None:
    row = _command_row(command)
    assert re.search(rf"{re.escape(flag)}(?![\w-])", row), f"{command}: {flag} not in {row}"


def test_readme_names_the_test_data_directory_that_exists() -> None:
    assert "`tests/data/`" in README
    assert (REPO / "tests" / "data").is_dir()
    assert "../shared" not in README


def test_docs_cite_the_contract_in_the_repository_never_spec_md() -> None:
    assert (REPO / "docs" / "contract.md").is_file()
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert "SPEC" not in path.read_text(), path.name


CONTRACT = (REPO / "docs" / "contract.md").read_text()
CITED_TESTS = sorted(set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", CONTRACT)))


def test_contract_cites_tests_and_marks_the_rest_pending() -> None:
    assert len(CITED_TESTS) > 50
    for line in CONTRACT.splitlines():
        assert "(proof: pending" not in line or re.search(r"\(proof: pending — [\w <>]+\)", line)


@pytest.mark.parametrize(("path", "name"), CITED_TESTS)
def test_contract_cited_test_exists(path: str, name: str) -> None:
    source = (REPO / path).read_text()
    assert re.search(rf"^(async def|def|class) {name}\b|^{name} = ", source, re.M), (
        f"docs/contract.md cites {path}::{name}, which does not exist")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/test" in README
    assert "bash scripts/test" in ci.splitlines()


def test_architecture_doc_names_every_channel_constant() -> None:

    doc = (REPO / "docs" / "architecture.md").read_text()
    for name in ("TICK_QUEUE_BATCHES", "DECISION_QUEUE_BATCHES", "RECORD_QUEUE_BATCHES"):
        assert name in doc
        assert f"{getattr(engine.runtime.pipeline, name)} batches" in doc


def _words_of_block(text: str, after: str) -> set[str]:
    """The words of the first fenced block after the heading ``after``."""
    block = text.split(after, 1)[1].split("```", 2)[1]
    return set(re.findall(r"[a-z_]+", block))


ENGINE_MODULES = sorted(
    p.relative_to(REPO).as_posix()
    for p in (REPO / "engine").rglob("*.py")
    if p.stem not in {"__init__", "__main__"} and "commands" not in p.parts
)


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_layout_pictures_name_every_module(module: str) -> None:
    """The README's layout block and docs/architecture.md's picture of the parts name every
    module of engine/ (commands/ is named as a folder: one thin module per command)."""
    name = Path(module).stem
    readme = (REPO / "README.md").read_text()
    architecture = (REPO / "docs" / "architecture.md").read_text()
    assert name in _words_of_block(readme, "## Layout"), f"README layout lacks {module}"
    assert name in _words_of_block(architecture, "## Parts and arrows"), (
        f"docs/architecture.md picture lacks {module}"
    )
