"""Every bad value or argument, in a real subprocess: exit 12, one line naming the key.

Each case runs the real CLI with a subprocess timeout (a timeout is a failure:
``heartbeat_interval_s = 1e-300`` used to spin at 100% CPU, deaf to signals).
The refusal must be exactly one line on stderr that names the key or argument,
with no traceback anywhere.
"""

from __future__ import annotations

import socket
import string
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.load import _section_types
from engine.config.schema import field_ranges
from tests.fakes.engine_process import REAL_CAPTURE, REPO, engine_env, run_engine

SUBPROCESS_TIMEOUT_S = 60


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    names: str
    """What the one stderr line must contain (the key or the argument)."""
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None


def _toml(text: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / "engine.toml").write_text(text)

    return write


def _bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        (tmp / name).write_bytes(data)

    return write


def _zip(tmp: Path) -> None:
    with zipfile.ZipFile(tmp / "capture.zip", "w") as archive:
        archive.writestr("capture.txt", '1723161253937085768 {"e":"trade"}\n')


def _file_as_parent(tmp: Path) -> None:
    (tmp / "file").write_text("x")


RUN = ["run", "--db", "{tmp}/engine.db"]
CONFIG = ["config", "--config", "{tmp}/engine.toml"]
REPLAY = ["replay", str(REAL_CAPTURE), "--db", "{tmp}/engine.db"]

CASES = [
    # numbers that used to hang or crash at run time (issue 10, "Values")
    Case("heartbeat-1e-300", RUN, "engine.heartbeat_interval_s",
         {"ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "1e-300"}),
    Case("order-timeout-1e300", RUN, "execution.order_timeout_s",
         {"ENGINE_EXECUTION_ORDER_TIMEOUT_S": "1e300"}),
    Case("qty-step-1e-80", RUN, "execution.qty_step", {"ENGINE_EXECUTION_QTY_STEP": "1E-80"}),
    Case("fee-1e100", RUN, "execution.fee_bps", {"ENGINE_EXECUTION_FEE_BPS": "1E+100"}),
    Case("slippage-79-digits", RUN, "execution.slippage_bps",
         {"ENGINE_EXECUTION_SLIPPAGE_BPS": "1" * 79}),
    Case("start-price-1e15", RUN, "ingest.synthetic_start_price",
         {"ENGINE_INGEST_SYNTHETIC_START_PRICE": "1E+15"}),
    Case("symbol-with-space-env", RUN, "ingest.symbols", {"ENGINE_INGEST_SYMBOLS": "BTC USDT"}),
    Case("lenient-decimal", RUN, "execution.fee_bps", {"ENGINE_EXECUTION_FEE_BPS": " 5 "}),
    Case("toml-number-out-of-range", CONFIG, "strategy.slow",
         setup=_toml("[strategy]\nslow = 1000000\n")),
    Case("toml-fee-1e100", CONFIG, "execution.fee_bps",
         setup=_toml('[execution]\nfee_bps = "1E+100"\n')),
    # the configuration file itself
    Case("toml-nested-arrays", CONFIG, "--config",
         setup=_toml("a = " + "[" * 3000 + "]" * 3000 + "\n")),
    Case("toml-nested-tables", CONFIG, "--config",
         setup=_toml("a = " + "{b=" * 3000 + "1" + "}" * 3000 + "\n")),
    Case("toml-dotted-key", CONFIG, "--config", setup=_toml("a." * 50_000 + "b = 1\n")),
    Case("config-dev-zero", ["config", "--config", "/dev/zero"], "--config"),
    Case("config-directory", ["config", "--config", "{tmp}"], "--config"),
    Case("config-missing", ["config", "--config", "{tmp}/nope.toml"], "--config"),
    # the database
    Case("db-dev-null", ["run", "--db", "/dev/null"], "--db"),
    Case("db-directory", ["run", "--db", "{tmp}"], "--db"),
    Case("db-parent-is-file", ["run", "--db", "{tmp}/file/engine.db"], "--db",
         setup=_file_as_parent),
    Case("db-unopenable", ["run", "--db", "/proc/engine.db"], "--db"),
    Case("db-path-from-config", ["run", "--config", "{tmp}/engine.toml"], "engine.db_path",
         setup=_toml('[engine]\ndb_path = "/dev/null"\n')),
    Case("db-path-from-env", ["run"], "engine.db_path", {"ENGINE_ENGINE_DB_PATH": "/dev/null"}),
    # command-line arguments
    Case("speed-nan", [*REPLAY, "--speed", "nan"], "--speed"),
    Case("speed-inf", [*REPLAY, "--speed", "inf"], "--speed"),
    Case("speed-negative", [*REPLAY, "--speed", "-1"], "--speed"),
    Case("speed-not-a-number", [*REPLAY, "--speed", "fast"], "--speed"),
    Case("unknown-argument", [*RUN, "--fast"], "--fast"),
    Case("unknown-command", ["rnu"], "rnu"),
    Case("record-symbol-with-space",
         ["record", "--symbols", "BTC USDT", "--out", "{tmp}/rec.txt"], "--symbols"),
    Case("record-bad-url",
         ["record", "--url", "http://x", "--out", "{tmp}/rec.txt"], "--url"),
    Case("dashboard-host-256", ["dashboard", "--db", "{tmp}/e.db", "--host", "256.1.1.1"],
         "--host"),
    Case("dashboard-host-unresolvable",
         ["dashboard", "--db", "{tmp}/e.db", "--host", "nonexistent.invalid"], "--host"),
    Case("dashboard-port-out-of-range", ["dashboard", "--db", "{tmp}/e.db", "--port", "70000"],
         "--port"),
    Case("dashboard-db-directory", ["dashboard", "--db", "{tmp}"], "--db"),
    Case("dashboard-db-device", ["dashboard", "--db", "/dev/null"], "--db"),
    Case("dashboard-port-busy", ["dashboard", "--db", "{tmp}/e.db", "--port", "{busy_port}"],
         "--port"),
    # replay inputs without market data in a supported format
    Case("capture-zip", ["replay", "{tmp}/capture.zip", "--db", "{tmp}/e.db"], "capture.zip",
         setup=_zip),
    Case("capture-csv", ["replay", "{tmp}/c.csv", "--db", "{tmp}/e.db"], "c.csv",
         setup=_bytes("c.csv", b"time,price,qty\n1723161253937,61737.63,0.1\n")),
    Case("capture-random", ["replay", "{tmp}/r.bin", "--db", "{tmp}/e.db"], "r.bin",
         setup=_bytes("r.bin", bytes(range(256)) * 40)),
    Case("capture-nul", ["replay", "{tmp}/z.bin", "--db", "{tmp}/e.db"], "z.bin",
         setup=_bytes("z.bin", b"\0" * 10_000)),
    Case("capture-empty", ["replay", "{tmp}/e.txt", "--db", "{tmp}/e.db"], "e.txt",
         setup=_bytes("e.txt", b"")),
    Case("capture-directory", ["replay", "{tmp}", "--db", "{tmp}/e.db"], "a directory"),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def assert_refused(done: subprocess.CompletedProcess[str], names: str) -> None:
    """Exit 12, exactly one line on stderr naming ``names``, no traceback anywhere."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert done.returncode == 12, done.stderr[-2000:]
    assert len(lines) == 1, lines
    assert names in lines[0], lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_bad_value_exit_12_one_line_naming_the_key(
    tmp_path: Path, busy_port: int, case: Case
) -> None:
    if case.setup is not None:
        case.setup(tmp_path)
    args = [a.format(tmp=tmp_path, busy_port=busy_port) for a in case.args]
    done = run_engine(args, env=case.env, timeout=SUBPROCESS_TIMEOUT_S)
    assert_refused(done, case.names)
    if case.id.startswith("record-"):
        assert '"ws_connect"' not in done.stdout  # refused before connecting


NUMERIC_KEYS = [
    f"{section}.{key}"
    for section, section_type in _section_types().items()
    for key in field_ranges(section_type)
]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(NUMERIC_KEYS),
    raw=st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.floats().map(repr),
        st.text(alphabet=string.digits + ".eE+-_ nainf", max_size=24),
    ),
)
def test_cli_any_number_for_a_numeric_key_loads_or_is_exit_12_naming_it(
    key: str, raw: str
) -> None:
    section, _, name = key.partition(".")
    env = {f"ENGINE_{section}_{name}".upper(): raw}
    done = run_engine(["config"], env=env, timeout=SUBPROCESS_TIMEOUT_S)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
    if done.returncode == 0:
        return
    assert done.returncode == 12, done.stderr[-2000:]
    (line,) = done.stderr.splitlines()
    assert f"{section}." in line and name in line, line


# Admitted values at the ends of their ranges: the run and the report complete (nothing
# downstream raises). Highest prices, finest step, the largest notional and fees; then
# the smallest prices with a coarse step (every quantity rounds to zero).
_EXTREME_COMMON = """
[engine]
mode = "paper"
heartbeat_interval_s = 0.01
[ingest]
synthetic_max_ticks = 3000
synthetic_rate_per_s = 100000
synthetic_start_price = "{price}"
[strategy]
fast = 1
slow = 2
bar_seconds = 0
[risk]
max_exposure_usd = "1000000000"
max_symbol_exposure_usd = "1000000000"
max_open_orders = 1000
max_drawdown_usd = "{drawdown}"
[execution]
order_notional_usd = "{notional}"
qty_step = "{step}"
fee_bps = "{fee}"
slippage_bps = "{slippage}"
latency_ms = 0
order_timeout_s = {timeout}
order_type = "{order_type}"
limit_offset_bps = "1000"
"""
EXTREMES = {
    "high-limit": dict(price="1000000", drawdown="1000000000", notional="1000000000",
                       step="1E-12", fee="1000", slippage="1000", timeout=86400,
                       order_type="limit"),
    "low-coarse": dict(price="0.01", drawdown="0.000000000001", notional="0.000000000001",
                       step="1000000", fee="0", slippage="0", timeout=0.001,
                       order_type="market"),
    "odd-digits": dict(price="999999.99", drawdown="0.000000000001", notional="1000000000",
                       step="0.123456789012", fee="0.000000000001",
                       slippage="999.999999999999", timeout=0.001, order_type="market"),
}  # fmt: skip


@pytest.mark.parametrize("name", EXTREMES)
def test_cli_values_at_the_ends_of_their_ranges_run_and_report_cleanly(
    tmp_path: Path, name: str
) -> None:
    config = tmp_path / "engine.toml"
    config.write_text(_EXTREME_COMMON.format(**EXTREMES[name]))
    db = str(tmp_path / "engine.db")
    done = run_engine(["run", "--config", str(config), "--db", db], timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    report = run_engine(["report", "--db", db], timeout=SUBPROCESS_TIMEOUT_S)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    assert "conservation      OK" in report.stdout


def test_cli_reader_closing_the_pipe_early_ends_without_a_traceback(tmp_path: Path) -> None:
    # `hybrid-engine report | head -1`: the reader goes away before the output is
    # written. Closing our end before the child writes makes that deterministic.
    db = tmp_path / "e.db"
    assert run_engine(["replay", str(REAL_CAPTURE), "--db", str(db)]).returncode == 0
    child = subprocess.Popen(
        [sys.executable, "-m", "engine", "report", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=engine_env(None), cwd=REPO,
    )  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
