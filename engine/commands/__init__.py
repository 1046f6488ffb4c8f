"""CLI subcommands, one module each: ``add_parser(subparsers)`` and ``run(args) -> int``.

To add a command, write ``engine/commands/<name>.py`` with those two functions and
list it in ``engine.cli.COMMANDS``.
"""
