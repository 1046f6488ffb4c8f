"""``hybrid-engine record --venue V --symbols S... --out FILE[.gz] [--duration S] [--url U]``.

Connects to a venue's public WebSocket exactly as ``run`` does (same URL,
subscribe message, keepalive, reconnect budget) and appends every frame it
receives to ``FILE`` as ``<ts_recv_ns> <raw frame>`` -- the format ``replay``
reads. Frames are recorded raw, undecoded: malformed ones too, so a replay meets
what the live run met. Stops after ``--duration`` seconds or at SIGINT/SIGTERM,
writing what is pending and closing the file cleanly (gzip trailer included).

Exit codes: 0 stopped as asked; 10 the reconnect budget ran out, or
``--duration`` elapsed without a single frame received (a recording of nothing
is a failure, not a success); 12 bad arguments or configuration (symbols are
checked by the ``ingest.symbols`` rule before any connection); 1 the file could
not be written.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys

import msgspec
import trio

from engine import logs
from engine.adapters.market.ws.stream import WebSocketStream
from engine.config.bounds import PATTERN_MEANINGS, SYMBOL_PATTERN
from engine.config.load import load_config
from engine.config.schema import IngestSection, Source, Venue
from engine.counters import Counters
from engine.exits import ConfigError, ExitCode, NetworkBudgetExhausted
from engine.ports import TickBatch


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record a venue's raw WebSocket frames to a capture file that replay reads",
    )
    parser.add_argument(
        "--venue", choices=[v.value for v in Venue], help="venue (default: ingest.venue)"
    )
    parser.add_argument(
        "--symbols", nargs="+", metavar="S", help="symbols / product ids (default: ingest.symbols)"
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="capture file, appended; gzip if it ends .gz"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: at SIGINT)"
    )
    parser.add_argument(
        "--url", metavar="U", help="WebSocket URL (default: the venue's public one)"
    )
    parser.add_argument("--config", metavar="F", help="TOML configuration file (timeouts, budget)")
    parser.set_defaults(handler=run)


def recording_section(args: argparse.Namespace, base: IngestSection) -> IngestSection:
    """The ``[ingest]`` section of a recording: the config's, with the arguments on top."""
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise ConfigError(f"--duration: must be a positive number of seconds, got {args.duration}")
    symbols = tuple(args.symbols) if args.symbols else base.symbols
    if not symbols:
        raise ConfigError("--symbols: at least one symbol is needed")
    bad = [s for s in symbols if not re.fullmatch(SYMBOL_PATTERN, s)]
    if bad:
        raise ConfigError(f"--symbols: {bad[0]!r} {PATTERN_MEANINGS[SYMBOL_PATTERN]}")
    return msgspec.structs.replace(
        base,
        source=Source.WEBSOCKET,
        venue=Venue(args.venue) if args.venue else base.venue,
        symbols=symbols,
        url=base.url if args.url is None else args.url,
        record_path=args.out,
    )


def run(args: argparse.Namespace) -> int:
    section = recording_section(args, load_config(args.config).ingest)
    try:
        return int(trio.run(record, section, args.duration))
    except ConfigError as exc:
        # A refusal of a value the command line gave names the argument, not the key.
        key, sep, rest = str(exc).partition(": ")
        flag = {"ingest.url": args.url, "ingest.symbols": args.symbols}
        if sep and flag.get(key) is not None:
            raise ConfigError(f"--{key.removeprefix('ingest.')}: {rest}") from None
        raise


async def record(section: IngestSection, duration: float | None) -> ExitCode:
    """Record until ``duration`` elapses, a signal arrives, or the budget is spent."""
    counters = Counters()
    stream = WebSocketStream(section, counters, decode=False)
    send, _receive = trio.open_memory_channel[TickBatch](1)  # decode=False: never used
    code = ExitCode.COMPLETE
    stopped_by = "duration"
    async with trio.open_nursery() as nursery:
        recording = trio.CancelScope()
        if duration is not None:
            recording.deadline = trio.current_time() + duration

        async def stop_on_signal() -> None:
            nonlocal stopped_by
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    stopped_by = signal.Signals(signum).name
                    recording.cancel()

        nursery.start_soon(stop_on_signal)
        logs.info(
            "record_started",
            venue=section.venue.value,
            symbols=list(section.symbols),
            url=stream.url,
            out=section.record_path,
            duration_s=duration,
        )
        with recording:
            try:
                await stream.stream(send)
            except NetworkBudgetExhausted as exc:
                code = ExitCode.NETWORK
                stopped_by = f"network budget: {exc}"
            except ConfigError as exc:  # e.g. --out cannot be opened
                code = ExitCode.CONFIG
                stopped_by = str(exc)
            except OSError as exc:
                code = ExitCode.CRASH
                stopped_by = f"cannot write {section.record_path}: {exc}"
        nursery.cancel_scope.cancel()
    recorder = stream.recorder
    if recorder is not None and recorder.failed is not None and code is ExitCode.COMPLETE:
        code = ExitCode.CRASH
        stopped_by = f"write failed: {recorder.failed!r}"
    no_frames = duration is not None and counters.ingest_received == 0
    if code is ExitCode.COMPLETE and stopped_by == "duration" and no_frames:
        code = ExitCode.NETWORK
        stopped_by = (
            f"no frame received from {stream.url} in {duration:g} s "
            f"({stream.stats.attempts} connection attempts)"
        )
    logs.info(
        "record_finished",
        out=section.record_path,
        stopped_by=stopped_by,
        exit_code=int(code),
        frames_received=counters.ingest_received,
        frames_written=recorder.written if recorder is not None else 0,
        frames_dropped=recorder.dropped if recorder is not None else 0,
        reconnects=counters.reconnects,
    )
    if code is not ExitCode.COMPLETE:
        print(f"hybrid-engine record: {stopped_by}", file=sys.stderr)
    return code
