"""Lines for the person at the terminal: what a run is about to do, and how it is doing.

The JSON lines on stdout are for journald and for machines; a first ``run`` that
only logs them looks dead (10 s of the synthetic walk: 196 ticks, no signal, and
nothing says the slow SMA needs 20 bars first). So, on stderr:

* **the start line** (``start_line``), always, once: mode, source, symbols,
  database, strategy and its warm-up ("first signal possible after 21 bars of 1 s");
* **progress** (``progress_line``) at every heartbeat, only when stderr is a
  terminal or ``engine.progress = "always"`` asks for it (``progress_wanted``):
  ticks, rate, signals, orders, fills, vetoes, drops;
* **why it stopped** (``failure_line``), one line, when a run ends with a failure
  exit code -- a failure must never look like a quiet success.

Everything here is a pure function of its arguments (the caller prints with
``engine.logs.human``); the end-of-run summary is the command's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

from engine.config.schema import Config, Mode, ProgressSetting, Source, StrategyChoice
from engine.config.strategies import user_class_of
from engine.core.choice import build_strategy
from engine.core.strategy import duration_text
from engine.exits import ExitCode

MAX_LINE_CHARS: Final = 400
"""A failure or refusal line is cut to this length (it may quote a hostile value)."""

MODE_MEANINGS: Final = {
    Mode.SHADOW: "records the orders it would send; none leaves",
    Mode.PAPER: "simulated fills against later trades; no order leaves",
    Mode.LIVE: "REAL ORDERS at the venue",
}


class _Stream(Protocol):
    def isatty(self) -> bool: ...


def warmup(strategy: StrategyChoice) -> str:
    """When the configured strategy's first signal can come, as its ``describe()`` says."""
    described = build_strategy(strategy, user_class_of(strategy)).describe()
    _, start, rest = described.partition("first signal possible")
    return start + rest if start else described


def describe_source(config: Config, captures: Sequence[str], speed: float | None) -> str:
    """Where the market data comes from, and which symbols, in words."""
    ingest = config.ingest
    if captures or ingest.source is Source.REPLAY:
        paths = list(captures or ingest.captures)
        pace = ingest.speed if speed is None else speed
        pace_text = "as fast as possible" if pace == 0 else f"at {pace:g}x the recorded pace"
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        first = paths[0] if paths else "(none)"
        return f"source replay of {first}{more} {pace_text}; symbols those in the capture"
    if ingest.source is Source.SYNTHETIC:
        limit = f", {ingest.synthetic_max_ticks:,} trades" if ingest.synthetic_max_ticks else ""
        return (
            f"source synthetic random walk ({ingest.synthetic_rate_per_s:g} trades/s, "
            f"seed {ingest.synthetic_seed}{limit}); symbols {', '.join(ingest.synthetic_symbols)}"
        )
    url = ingest.url or "its public endpoint"
    return f"source {ingest.venue.value} WebSocket ({url}); symbols {', '.join(ingest.symbols)}"


def start_line(
    config: Config,
    *,
    command: str,
    db_path: str,
    captures: Sequence[str] = (),
    speed: float | None = None,
    strategy: str | None = None,
) -> str:
    """The one line a run prints on stderr before it starts.

    ``strategy`` is the strategy's own ``describe()`` (what it is and its
    warm-up); ``None`` asks a fresh instance of the configured one.
    """
    mode = config.engine.mode
    if strategy is None:
            strategy = build_strategy(config.strategy, user_class_of(config.strategy)).describe()
    return (
        f"hybrid-engine {command}: {mode.value.upper()} mode ({MODE_MEANINGS[mode]}); "
        f"{describe_source(config, captures, speed)}; database {Path(db_path).resolve()}; "
        f"strategy {strategy}"
    )


def progress_line(
    previous: Mapping[str, int] | None,
    current: Mapping[str, int],
    elapsed_s: float,
    trading_state: str,
) -> str:
    """One heartbeat's progress: totals, and the tick rate since the previous heartbeat.

    ``previous`` is the counter snapshot of the previous heartbeat (``None`` at
    the first); ``elapsed_s`` the time between the two.
    """

    def total(*names: str) -> int:
        return sum(current.get(name, 0) for name in names)

    ticks = current.get("tick_count", 0)
    line = f"progress: {ticks:,} ticks"
    if elapsed_s > 0:
        new = ticks - (previous or {}).get("tick_count", 0)
        line += f" (+{new:,} in {duration_text(elapsed_s)}, {new / elapsed_s:,.1f}/s)"
    parts = [
        line,
        f"{total('signal_count'):,} signals",
        f"{total('shadow_orders', 'paper_orders', 'live_orders'):,} orders",
        f"{total('trade_count'):,} fills",
        f"{total('risk_vetoes', 'stale_vetoes'):,} vetoes",
        f"{total('bp_drops_tick', 'bp_drops_signal', 'bp_drops_persist'):,} drops",
    ]
    malformed = total("parse_errors")
    if malformed:
        parts.append(f"{malformed:,} malformed")
    parts.append(trading_state)
    done = replay_done(previous, current, elapsed_s)
    if done:
        parts.insert(0, done)
    return " | ".join(parts)


BAR_WIDTH = 20


def replay_done(
    previous: Mapping[str, int] | None, current: Mapping[str, int], elapsed_s: float
) -> str:
    """``[########............]  42.0% ETA 3.1 min`` for a replay, ``""`` otherwise.

    Percent of the capture bytes read (as stored: a compressed file counts its
    compressed bytes); the ETA extrapolates the byte rate since the previous
    heartbeat (none at the first, or when nothing was read since).
    """
    total = current.get("replay_bytes_total", 0)
    if total <= 0:
        return ""
    read = min(current.get("replay_bytes_read", 0), total)
    fraction = read / total
    filled = int(fraction * BAR_WIDTH)
    text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {100 * fraction:5.1f}%"
    since = read - (previous or {}).get("replay_bytes_read", read)
    if previous is not None and elapsed_s > 0 and since > 0:
        text += f" ETA {duration_text((total - read) * elapsed_s / since)}"
    return text


def progress_wanted(setting: ProgressSetting, stream: _Stream) -> bool:
    """Progress lines on ``stream``: ``auto`` when it is a terminal, or as the key says."""
    if setting is ProgressSetting.AUTO:
        try:
            return stream.isatty()
        except (OSError, ValueError):  # a closed or detached stream
            return False
    return setting is ProgressSetting.ALWAYS


def one_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` on one line (line breaks and tabs become spaces), at most ``limit`` characters."""
    flat = " ".join(text.splitlines()).replace("\t", " ")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def failure_line(code: ExitCode, reason: str) -> str:
    """``hybrid-engine: stopped, exit 10 (NETWORK): <reason>`` on one bounded line."""
    return one_line(f"hybrid-engine: stopped, exit {int(code)} ({code.name}): {reason}")
