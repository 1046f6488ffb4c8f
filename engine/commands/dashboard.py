"""``hybrid-engine dashboard --db F [--host 127.0.0.1] [--port 8080]``: the read-only web view."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from engine.config.load import load_config
from engine.dashboard.server import DEFAULT_HOST, DEFAULT_PORT
from engine.exits import ConfigError

MAX_PORT: Final = 65535


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve the read-only dashboard (/, /api/..., /metrics, /healthz)",
        description="Serve a read-only web dashboard over the engine's database. It opens the"
        " database read-only and never writes; it binds to loopback unless --host says otherwise.",
    )
    parser.add_argument("--db", metavar="F", help="database file (default: engine.db_path)")
    parser.add_argument("--config", metavar="F",
                        help="TOML configuration file (for engine.db_path)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to bind (default %(default)s)")
    parser.add_argument("--allow-host", metavar="NAME", action="append", default=[],
                        help="also answer requests whose Host: header is NAME (repeatable;"
                        " '*.example.com' allowed); loopback names and --host always are")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="TCP port, 0 for any free one (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= MAX_PORT:  # else bind() fails deep in Hypercorn with a traceback
        raise ConfigError(f"--port: {args.port} is not a TCP port (0-{MAX_PORT})")
    if not args.host.strip():  # an empty host would bind every interface, not loopback
        raise ConfigError("--host: empty; give an address (loopback is 127.0.0.1)")
    # Imported here: the web stack costs ~150 ms and no other command needs it.
    from engine.dashboard.app import allowed_hosts
    from engine.dashboard.server import main

    try:
        allowed_hosts(args.host, args.allow_host)
    except ValueError as exc:
        raise ConfigError(f"--allow-host: {exc}") from None
    db_path = args.db or load_config(args.config).engine.db_path
    # A database that does not exist yet is served (the engine may create it later);
    # a directory or a device never becomes one.
    if Path(db_path).exists() and not Path(db_path).is_file():
        key = "--db" if args.db else "engine.db_path"
        raise ConfigError(f"{key}: {db_path} is not a regular file (a database)")
    return main(db_path, args.host, args.port, tuple(args.allow_host))
