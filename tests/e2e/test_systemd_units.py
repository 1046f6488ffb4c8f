"""The operator's install: units, example configuration and docs agree, and the units are tight.

* ``systemd-analyze verify`` without a single warning. systemd-analyze exits 0
  even for an unknown key or an unparsable value (it "ignores" them), so the
  test also requires empty output. ExecStart must name an existing executable
  for verify, so the units are checked in a copy whose install path points at a
  stub.
* ``systemd-analyze security --offline=yes``: the engine's exposure score <= 3,
  the dashboard's <= 1.7 (skipped with a reason where the tool is missing).
* One configuration file, one proof path: the units pass ``--config`` and set
  no ``ENGINE_*`` variable; the example configuration (``systemd/engine.toml``)
  puts the database and the proof bundle in the unit's state directory; every
  shell step in ``docs/operations.md`` and ``docs/going-live.md`` passes the
  same ``--config`` (so ``proof`` writes where ``gate`` and the service read).
* The example configuration loads, names every key with its default and range,
  and runs the WebSocket source on Binance BTCUSDT in SHADOW.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.cli import main as cli_main
from engine.config.load import config_to_builtins, load_config
from engine.config.schema import Config
from tests.fakes.engine_process import REPO, EngineProcess
from tests.fakes.fake_exchange import Session, open_fake_exchange

UNITS = ("hybrid-engine.service", "hybrid-dashboard.service")
INSTALLED_CLI = "/opt/hybrid-engine/.venv/bin/hybrid-engine"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (package systemd)"
)


def _copy_units(tmp_path: Path, mutate: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    stub = tmp_path / "bin" / "hybrid-engine"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    paths = []
    for unit in UNITS:
        text = (REPO / "systemd" / unit).read_text().replace(INSTALLED_CLI, str(stub))
        if mutate and unit in mutate:
            old, new = mutate[unit]
            assert old in text
            text = text.replace(old, new)
        path = tmp_path / unit
        path.write_text(text)
        paths.append(path)
    return paths


def _verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *map(str, paths)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@needs_systemd_analyze
def test_units_verify_clean(tmp_path: Path) -> None:
    result = _verify(_copy_units(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_systemd_analyze
def test_units_verify_typo_in_directive_is_reported(tmp_path: Path) -> None:
    paths = _copy_units(tmp_path, {"hybrid-dashboard.service": ("CPUWeight=", "CPUWieght=")})
    result = _verify(paths)
    assert "Unknown key 'CPUWieght'" in result.stderr


def test_dashboard_unit_is_loopback_readonly_and_yields_cpu() -> None:
    text = (REPO / "systemd" / "hybrid-dashboard.service").read_text()
    lines = set(text.splitlines())
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert " dashboard " in exec_start and "--host 127.0.0.1" in exec_start
    for directive in (
        "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
        "StateDirectory=hybrid-engine", "IPAddressDeny=any", "IPAddressAllow=localhost",
        "CPUWeight=50", "CPUQuota=50%", "KillSignal=SIGINT", "Restart=on-failure",
        "RestartPreventExitStatus=12",
    ):
        assert directive in lines, directive


# -- systemd-analyze security ------------------------------------------------------

SECURITY_LIMITS = {"hybrid-engine.service": 3.0, "hybrid-dashboard.service": 1.7}
"""Highest ``systemd-analyze security`` exposure each unit may score (0 best, 10 worst)."""


def _offline_security_supported() -> bool:
    if SYSTEMD_ANALYZE is None:
        return False
    help_text = subprocess.run([SYSTEMD_ANALYZE, "--help"], capture_output=True, text=True,
                               timeout=30, check=False).stdout
    return "--offline" in help_text


needs_offline_security = pytest.mark.skipif(
    not _offline_security_supported(),
    reason="systemd-analyze with 'security --offline' (systemd >= 250, Debian package systemd)"
    " not installed",
)


def _exposure(path: Path) -> float:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    found = re.search(rf"Overall exposure level for {re.escape(path.name)}: (\d+\.\d+)",
                      result.stdout + result.stderr)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return float(found.group(1))


@needs_offline_security
@pytest.mark.parametrize("unit", sorted(SECURITY_LIMITS))
def test_unit_security_exposure_within_limit(unit: str) -> None:
    assert _exposure(REPO / "systemd" / unit) <= SECURITY_LIMITS[unit]


@needs_offline_security
def test_unit_security_without_hardening_scores_above_limit(tmp_path: Path) -> None:
    text = (REPO / "systemd" / "hybrid-engine.service").read_text()
    unhardened = tmp_path / "hybrid-engine.service"
    unhardened.write_text(text[:text.index("# Hardening")] + text[text.index("[Install]"):])
    assert _exposure(unhardened) > SECURITY_LIMITS["hybrid-engine.service"]


def test_engine_unit_hardening_directives_present() -> None:
    """What the score rests on, readable where systemd-analyze is missing."""
    lines = set(_unit_lines("hybrid-engine.service"))
    for directive in (
        "CapabilityBoundingSet=", "NoNewPrivileges=yes", "ProtectSystem=strict",
        "ProtectHome=yes", "PrivateDevices=yes", "PrivateUsers=yes", "MemoryDenyWriteExecute=yes",
        "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
        "LockPersonality=yes", "RestrictNamespaces=yes", "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallArchitectures=native",
        "StateDirectory=hybrid-engine", "UMask=0077",
        "KillSignal=SIGINT", "Restart=on-failure", "RestartPreventExitStatus=12",
    ):
        assert directive in lines, directive


# -- one configuration file, one proof path ----------------------------------------

CONFIG_FILE = "/etc/hybrid-engine/engine.toml"
EXAMPLE = REPO / "systemd" / "engine.toml"
DOCS_WITH_SHELL_STEPS = ("docs/operations.md", "docs/going-live.md")
CONFIGURED_COMMANDS = {"run", "proof", "gate", "dashboard", "health", "config"}
"""Subcommands that read the configuration: in the docs they must pass ``--config``."""


def _unit_lines(unit: str) -> list[str]:
    return (REPO / "systemd" / unit).read_text().splitlines()


def _exec_start(unit: str) -> list[str]:
    [line] = [x for x in _unit_lines(unit) if x.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _state_directory(unit: str) -> Path:
    [line] = [x for x in _unit_lines(unit) if x.startswith("StateDirectory=")]
    return Path("/var/lib") / line.removeprefix("StateDirectory=")


def _shell_commands(markdown: str) -> list[list[str]]:
    """Every command line of the ``sh`` blocks, continuation lines joined, split at
    ``|``, ``&&``, ``||`` and ``;``, comments dropped."""
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            current: list[str] = []
            for token in lexer:
                if token in ("|", "&&", "||", ";", "&"):
                    commands.append(current)
                    current = []
                else:
                    current.append(token)
            commands.append(current)
    return [c for c in commands if c]


def _engine_invocations(markdown: str) -> list[tuple[list[str], list[str]]]:
    """``(tokens before, argv from the subcommand on)`` of each ``hybrid-engine`` call."""
    found = []
    for tokens in _shell_commands(markdown):
        for i, token in enumerate(tokens[:-1]):
            if Path(token).name == "hybrid-engine":
                found.append((tokens[:i], tokens[i + 1:]))
    return found


def test_units_pass_the_config_file_and_set_no_engine_overrides() -> None:
    assert _exec_start("hybrid-engine.service")[1:] == ["run", "--config", CONFIG_FILE]
    dashboard = _exec_start("hybrid-dashboard.service")
    assert dashboard[1] == "dashboard" and _option(dashboard, "--config") == CONFIG_FILE
    assert "--db" not in dashboard  # the database comes from the same file
    for unit in UNITS:
        for line in _unit_lines(unit):
            assert not re.match(r"Environment(File)?=.*ENGINE_", line), (unit, line)


def test_example_config_keeps_database_and_proof_in_the_state_directory() -> None:
    config = load_config(EXAMPLE, environ={})
    state = _state_directory("hybrid-engine.service")
    assert _state_directory("hybrid-dashboard.service") == state
    assert Path(config.engine.db_path).parent == state
    assert Path(config.engine.proof_path).parent == state


@pytest.mark.parametrize("doc", DOCS_WITH_SHELL_STEPS)
def test_doc_shell_steps_use_the_units_config_file_and_database(doc: str) -> None:
    config = load_config(EXAMPLE, environ={})
    calls = _engine_invocations((REPO / doc).read_text())
    assert calls, f"{doc} has no hybrid-engine shell steps"
    for before, argv in calls:
        where = f"{doc}: {shlex.join([*before, 'hybrid-engine', *argv])}"
        for token in before:  # an override would move the proof or the database elsewhere
            assert not re.match(r"ENGINE_ENGINE_(PROOF|DB)_PATH=", token), where
        if argv[0] in CONFIGURED_COMMANDS and "--example" not in argv:
            assert _option(argv, "--config") == CONFIG_FILE, where
        db = _option(argv, "--db")
        if db is not None and Path(db).parent == Path(config.engine.db_path).parent:
            # The service's database by its one name, or a rehearsal's own database
            # named by its mode (one database is one account: shadow.db, paper.db).
            rehearsals = {str(Path(config.engine.db_path).with_name(f"{m}.db"))
                          for m in ("shadow", "paper")}
            assert db == config.engine.db_path or db in rehearsals, where
        if argv[0] == "proof":
            assert "--out" not in argv, where  # the bundle goes to [engine] proof_path


def test_doc_healthcheck_steps_name_the_config_file() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    runs = [c for c in _shell_commands(text) if any(t.endswith("healthcheck.sh") for t in c)]
    assert runs
    for tokens in runs:
        settings = dict(t.split("=", 1) for t in tokens if re.match(r"HYBRID_ENGINE\w*=", t))
        assert settings.get("HYBRID_ENGINE_CONFIG") == CONFIG_FILE, tokens
        assert "HYBRID_ENGINE_DB" not in settings, tokens


def test_shell_commands_parser_finds_configured_and_unconfigured_calls() -> None:
    text = ("```sh\nsudo -u x ENGINE_ENGINE_PROOF_PATH=/tmp/p /opt/v/bin/hybrid-engine proof \\\n"
            "  --config /etc/hybrid-engine/engine.toml   # a comment\n"
            "hybrid-engine gate | tee x && hybrid-engine report --db a.db\n```\n")
    calls = _engine_invocations(text)
    assert [argv for _, argv in calls] == [
        ["proof", "--config", CONFIG_FILE], ["gate"], ["report", "--db", "a.db"],
    ]
    assert calls[0][0] == ["sudo", "-u", "x", "ENGINE_ENGINE_PROOF_PATH=/tmp/p"]


# -- the example configuration -------------------------------------------------------

CHANGED_FROM_DEFAULT = {
    ("engine", "db_path"): "/var/lib/hybrid-engine/engine.db",
    ("engine", "proof_path"): "/var/lib/hybrid-engine/proof.json",
    ("ingest", "source"): "websocket",
}
"""What the example sets on purpose; every other key shows its default."""

ENTRY_RE = re.compile(r"\[default: (?P<default>.+); range: (?P<range>.+)\]\s*$")


def _example_entries() -> dict[tuple[str, str], tuple[str, str, str]]:
    """``(section, key) -> (comment block, default text, range text)`` of the example."""
    entries = {}
    section = ""
    comment: list[str] = []
    for line in EXAMPLE.read_text().splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line):
            section, comment = header.group(1), []
        elif key := re.fullmatch(r"(?:# )?(\w+) = .*", line):
            if comment and (entry := ENTRY_RE.search(comment[-1])):
                assert (section, key.group(1)) not in entries, key.group(1)
                entries[(section, key.group(1))] = (
                    " ".join(comment), entry.group("default"), entry.group("range"))
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        else:
            comment = []
    return entries


def test_example_is_one_file_shipped_in_the_package() -> None:
    assert EXAMPLE.is_symlink()
    assert EXAMPLE.resolve() == (REPO / "engine" / "config" / "example.toml").resolve()
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    assert "example.toml" in package_data["engine.config"]


def test_config_example_command_prints_the_file() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["config", "--example"]) == 0
    assert out.getvalue() == EXAMPLE.read_text()


def test_example_loads_websocket_binance_btcusdt_in_shadow() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.engine.mode == "shadow"
    assert config.ingest.source == "websocket"
    assert config.ingest.venue == "binance"
    assert config.ingest.symbols == ("BTCUSDT",)
    assert config.ingest.url == ""  # the venue's public endpoint


def test_example_sets_every_key_to_its_default_except_the_deliberate_ones() -> None:
    effective = config_to_builtins(load_config(EXAMPLE, environ={}))
    written = tomllib.loads(EXAMPLE.read_text())
    defaults = config_to_builtins(Config())
    for section, values in defaults.items():
        for key, default in values.items():
            want = CHANGED_FROM_DEFAULT.get((section, key), default)
            assert effective[section][key] == want, (section, key)
            if default is not None:  # an unset default (None) can only be commented out
                assert key in written[section], f"{section}.{key} not written out"


def test_example_names_every_key_with_its_default_and_range() -> None:
    entries = _example_entries()
    defaults = config_to_builtins(Config())
    keys = {(section, key) for section, values in defaults.items() for key in values}
    assert set(entries) == keys
    for (section, key), (comment, default_text, range_text) in entries.items():
        default: Any = defaults[section][key]
        if default is None:
            assert default_text == "unset", key
        else:
            shown = tomllib.loads(f"x = {default_text}")["x"]
            assert shown == (list(default) if isinstance(default, tuple) else default), key
        assert range_text.strip(), key
        assert ("CHANGED" in comment) == ((section, key) in CHANGED_FROM_DEFAULT), key


TRADES_SENT = 600


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_example_config_runs_the_websocket_feed_in_shadow_until_sigint(
    tmp_path: Path,
) -> None:
    """The service as the docs set it up: `run --config <the example>`, against a Binance
    stand-in on 127.0.0.1. Only the endpoint, the heartbeat period (for a quick test) and the
    database (not /var/lib) differ from the installed service."""
    db = tmp_path / "engine.db"
    async with open_fake_exchange("binance", [Session(frames=TRADES_SENT)]) as fake:
        engine = EngineProcess(
            ["run", "--config", str(EXAMPLE), "--db", str(db)],
            env={"ENGINE_INGEST_URL": fake.url, "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2"},
        )
        try:
            await trio.to_thread.run_sync(
                engine.wait_for,
                lambda e: e.get("event") == "heartbeat" and e.get("tick_count") == TRADES_SENT,
                60,
            )
            engine.send_signal(signal.SIGINT)
            code = await trio.to_thread.run_sync(engine.finish, 60)
        finally:
            engine.kill()
    assert code == 0, engine.lines[-5:]
    [connected] = engine.events("ws_connected")[:1]
    assert connected["venue"] == "binance"
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT event_id FROM ticks")]
        modes = {r[0].lower() for r in conn.execute("SELECT mode FROM runs UNION SELECT mode FROM"
                                                    " heartbeats UNION SELECT mode FROM orders")}
    assert len(ids) == TRADES_SENT and all(i.startswith("binance:BTCUSDT:") for i in ids)
    assert modes == {"shadow"}
