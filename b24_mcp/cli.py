"""The `b24-mcp` command: parse the options, set up logging, load the configuration, serve.

A bad configuration never stops the server from starting: hosts show a server that fails to start as a
bare "failed" with no reason. Instead the problem is logged once, in one line, and `get_chat` returns it to
the model, naming the variable to fix. Heavy imports wait until they are needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import config, logs
from .errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b24-mcp",
        description="MCP server that lets AI agents read Bitrix24 chats (imbot.v2.Chat.get). "
        "Configured through B24_* environment variables; see the README.",
    )
    parser.add_argument("--demo", action="store_true", help="answer from the built-in demo portal (no account needed)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"b24-mcp {version('b24-mcp')}")
        return
    logs.setup(config.log_level(os.environ))
    settings: config.Settings | ConfigError
    try:
        settings = config.load(os.environ, demo=args.demo)
    except ConfigError as err:
        logging.getLogger("b24_mcp").error("configuration problem: %s (get_chat reports it until fixed)", err)
        settings = err

    from .server import build_server

    server = build_server(settings)
    try:
        server.run()
    except KeyboardInterrupt:
        sys.exit(130)
