"""The command line: its options, commands and help (argparse), read when it is more than a host's launch.

`cli` reads `b24-mcp` and `b24-mcp --demo`, how hosts start it, without this module: building the parser with its
help (every variable) costs each start as much as b24-mcp's own modules.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, NoReturn

from .variables import VARIABLES


def _port(raw: str) -> int:
    """A TCP port, refused by argparse in one line (uvicorn would fail much later, with a traceback)."""
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a TCP port; expected a number from 1 to 65535, e.g. 8000")
    return int(raw)


class _Version(argparse.Action):
    """-V/--version: the version is looked up only when asked for (importlib.metadata is not free)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"b24-mcp {version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse, with the likeliest choice named for a mistyped one (`b24-mcp chek`: did you mean check?)."""

    def error(self, message: str) -> NoReturn:
        typed = re.search(r"invalid choice: '?([^'\s]+)'?", message)
        if typed is not None:
            import difflib

            choices = [str(c) for action in self._actions for c in (action.choices or ())]
            guess = difflib.get_close_matches(typed[1], choices, n=1, cutoff=0.6)
            if guess:
                message += f"; did you mean {guess[0]}?"
        super().error(message)


def _shared(default: Any) -> _Parser:
    """The options every command takes, defined once. A subcommand gets default=SUPPRESS, so an option given
    before the command (`b24-mcp --demo check`) is not reset by the subcommand's own default."""
    shared = _Parser(add_help=False)
    shared.add_argument(
        "--demo", action="store_true", default=default, help="answer from the built-in demo portal (no account needed)"
    )
    shared.add_argument("-V", "--version", action=_Version, help="print the version and exit")
    return shared


HELP_WIDTH = 80  # the help's own text (description, variables) fits a classic terminal


def _variables() -> str:
    import textwrap

    width = max(len(v.name) for v in VARIABLES)
    indent = " " * (width + 4)
    lines = [
        textwrap.fill(v.meaning, HELP_WIDTH, initial_indent=f"  {v.name.ljust(width)}  ", subsequent_indent=indent)
        for v in VARIABLES
    ]
    return "environment variables (see the README):\n" + "\n".join(lines)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The main parser and each command's own (for `b24-mcp help COMMAND`)."""
    parser = _Parser(
        prog="b24-mcp",
        description="MCP server that lets AI agents read Bitrix24 chats (imbot.v2). An MCP host\n"
        "(Claude Code, Cursor, Claude Desktop) starts it and speaks JSON-RPC with it on\n"
        "stdin/stdout. To try it: b24-mcp check --demo",
        epilog=_variables(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_shared(False)],
    )
    parser.add_argument(
        "--transport",
        choices=("stdio", "streamable-http"),
        default="stdio",
        help="stdio (default, what desktop hosts launch) or streamable-http (serves /mcp, stateless)",
    )
    # No defaults here (main fills them in): given without --transport streamable-http, they are refused.
    parser.add_argument("--host", help="streamable-http: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="streamable-http: port (default 8000)")
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
    token = commands.add_parser(
        "token",
        help="print a new bearer token for B24_HTTP_TOKENS_FILE and the line to add there",
        description="Make a random bearer token. Without --append, print it and the line that admits it.",
    )
    token.add_argument(
        "--append",
        metavar="FILE",
        help="add the token's line to FILE (B24_HTTP_TOKENS_FILE; created if missing) and print only the token",
    )
    check = commands.add_parser(
        "check",
        help="diagnose the setup: settings, portal, credentials, bot, and a real get_chat round trip",
        description="Report the settings (secrets masked), reach the portal, prove the credentials (scope) and the "
        "bot (imbot.v2.Bot.get), start b24-mcp over stdio and call get_chat through a real MCP client. Exit 0 when "
        "all is well, 1 for a Redis, portal, credential, bot or chat problem, 2 for a configuration problem.",
        parents=[_shared(argparse.SUPPRESS)],
    )
    check.add_argument("--dialog", metavar="DIALOG_ID", help="the chat to fetch, e.g. chat5 (demo default: chat5)")
    journal = commands.add_parser(
        "journal",
        help="show what the journal of the bot's events keeps (B24_JOURNAL=on); forget a chat or everything",
        description="Show the journal's file, its chats and messages and how far it has read the bot's queue.",
    )
    journal.add_argument("--forget", metavar="DIALOG_ID", help="forget one chat's messages, e.g. chat5")
    journal.add_argument("--forget-all", action="store_true", help="forget every chat and message")
    helper = commands.add_parser("help", help="show this help, or a command's: b24-mcp help check")
    helper.add_argument(
        "topic", nargs="?", choices=("check", "token", "journal", "help"), metavar="COMMAND", help="check"
    )
    return parser, {"check": check, "token": token, "journal": journal, "help": helper}


HTTP_OPTIONS: dict[str, Callable[[argparse.Namespace], bool]] = {
    "--host": lambda args: args.host is not None,
    "--port": lambda args: args.port is not None,
    "--allowed-host": lambda args: bool(args.allowed_host),
    "--no-auth": lambda args: bool(args.no_auth),
}


def parse(argv: Sequence[str] | None) -> SimpleNamespace:
    """The options and the command, or exit 2 naming the bad one; `help` prints its page and says command=None."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command == "help":
        (commands[args.topic] if args.topic else parser).print_help()
        return SimpleNamespace(command="help")
    http_only = [name for name, given in HTTP_OPTIONS.items() if given(args)]
    if args.command is None and args.transport != "streamable-http" and http_only:
        parser.error(f"{http_only[0]} applies to Streamable HTTP only: add --transport streamable-http")
    return SimpleNamespace(**vars(args))


def version() -> str:
    from importlib.metadata import version

    return version("b24-mcp")
