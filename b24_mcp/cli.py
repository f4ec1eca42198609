"""The `b24-mcp` command: parse the options, set up logging, load the configuration, serve.

A bad configuration never stops the server from starting: hosts show a server that fails to start as a
bare "failed" with no reason. Instead the problem is logged once, in one line, and `get_chat` returns it to
the model, naming the variable to fix. Heavy imports (the SDK, httpx) wait until a path needs them, so
`--help`, `--version` and a bad option answer at once; so does an unsafe HTTP bind, which is refused (one
line, exit 2) before the SDK is even imported. Running the server on a transport is `transport`'s job.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import logs
from . import settings as config
from .errors import ConfigError


def _port(raw: str) -> int:
    """A TCP port, refused by argparse in one line (uvicorn would fail much later, with a traceback)."""
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a TCP port; expected a number from 1 to 65535, e.g. 8000")
    return int(raw)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b24-mcp",
        description="MCP server that lets AI agents read Bitrix24 chats (imbot.v2.Chat.get). "
        "Configured through B24_* environment variables; see the README.",
    )
    parser.add_argument("--demo", action="store_true", help="answer from the built-in demo portal (no account needed)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--transport",
        choices=("stdio", "streamable-http"),
        default="stdio",
        help="stdio (default, what desktop hosts launch) or streamable-http (serves /mcp, stateless)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="streamable-http: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="streamable-http: port (default 8000)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="streamable-http: a Host header to accept, HOST or HOST:PORT (repeatable). Required when --host is "
        "not a loopback address, e.g. --allowed-host mcp.example.com; other Hosts and Origins are refused",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="streamable-http: serve a non-loopback --host without bearer tokens (only behind a proxy that "
        "authenticates every request)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("token", help="print a new bearer token for B24_HTTP_TOKENS_FILE and the line to add there")
    check = commands.add_parser(
        "check",
        help="diagnose the setup: settings, portal, and a real get_chat round trip",
        description="Report the settings (secrets masked), reach the portal, start b24-mcp over stdio and call "
        "get_chat through a real MCP client. Exit 0 when all is well.",
    )
    check.add_argument("--demo", action="store_true", help="check against the built-in demo portal")
    check.add_argument("--dialog", metavar="DIALOG_ID", help="the chat to fetch, e.g. chat5 (demo default: chat5)")
    return parser


def _version() -> str:
    from importlib.metadata import version

    return version("b24-mcp")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"b24-mcp {_version()}")
        return
    if args.command == "check":
        from . import check

        sys.exit(
            check.run(
                ["--demo"] if args.demo else [], demo=args.demo, dialog=args.dialog, env=os.environ, out=sys.stdout
            )
        )

    if args.command == "token":
        from .team import print_new_token

        print_new_token(sys.stdout)
        return

    from . import transport

    security = http_auth = None
    if args.transport == "streamable-http":
        try:
            security = transport.transport_security(args.host, args.allowed_host)
            http_auth = transport.http_auth(args.host, args.no_auth, os.environ)
        except ConfigError as err:
            # Checked before logging and settings, so the refusal is the only line: nothing is served.
            print(f"b24-mcp: error: {err}", file=sys.stderr)
            sys.exit(2)

    logs.setup(config.log_level(os.environ))
    settings: config.Settings | ConfigError
    try:
        settings = config.load(os.environ, demo=args.demo)
    except ConfigError as err:
        logging.getLogger("b24_mcp").error("configuration problem: %s (get_chat reports it until fixed)", err)
        settings = err

    from .server import build_server

    server = build_server(
        settings, **transport.server_auth(http_auth, host=args.host, port=args.port, allowed_hosts=args.allowed_host)
    )
    try:
        if security is None:
            transport.serve_stdio(server)
        else:
            transport.serve_http(server, host=args.host, port=args.port, security=security)
    except KeyboardInterrupt:
        sys.exit(130)
