"""The `b24-mcp` command: parse the options, set up logging, load the configuration, serve (on `transport`).

A bad configuration never stops the server from starting, since hosts show a server that fails to start as a
bare "failed": each problem is logged once and the tools return it to the model. Heavy imports (the SDK, httpx)
wait until a path needs them, so `--help`, `--version` and a refused option or HTTP bind answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from . import logs
from . import settings as config
from .errors import ConfigError, Problems, problems_of

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

    from .team import HttpAuthConfig


TTY_NOTICE = (
    "b24-mcp: this is an MCP stdio server, meant to be started by an MCP host (Claude Code, Cursor, Claude Desktop), "
    "not typed at a terminal; it now waits for JSON-RPC on stdin (Ctrl-C quits). To try it: b24-mcp check --demo. "
    "To add it to a host: see the README."
)
INTERRUPTED = 130  # the shell's status for a process ended by Ctrl-C


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
        print(f"b24-mcp {_version()}")
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

    width = max(len(v.name) for v in config.VARIABLES)
    indent = " " * (width + 4)
    lines = [
        textwrap.fill(v.meaning, HELP_WIDTH, initial_indent=f"  {v.name.ljust(width)}  ", subsequent_indent=indent)
        for v in config.VARIABLES
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


def _version() -> str:
    from importlib.metadata import version

    return version("b24-mcp")


def _quit_at_once(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM: end now, or once an OAuth renewal under way is saved (Bitrix24 has rotated the pair,
    and it dies with the process). A stdio server blocked reading stdin would otherwise wait for a line that never
    comes, and then print a traceback."""
    oauth = sys.modules.get("b24_mcp.bitrix24.oauth")  # loaded only if an OAuth session was made
    if oauth is None:
        os._exit(128 + signum)
    oauth.RENEWALS.exit_when_settled(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command == "help":
        (commands[args.topic] if args.topic else parser).print_help()
        return
    if args.command == "check":
        signal.signal(signal.SIGINT, _quit_at_once)
        from . import check

        sys.exit(
            check.run(
                ["--demo"] if args.demo else [], demo=args.demo, dialog=args.dialog, env=os.environ, out=sys.stdout
            )
        )

    if args.command == "journal":
        from .journal import command

        sys.exit(command.run(os.environ, forget=args.forget, forget_all=args.forget_all, out=sys.stdout))

    if args.command == "token":
        from .team import append_new_token, print_new_token

        if args.append is None:
            print_new_token(sys.stdout)
            return
        try:
            token = append_new_token(args.append)
        except ConfigError as err:
            print(f"b24-mcp: error: {err}", file=sys.stderr)
            sys.exit(2)
        print(token)
        print(f"b24-mcp: added its digest to {args.append} (delete that line to revoke the token)", file=sys.stderr)
        return

    http_only = [name for name, given in _HTTP_OPTIONS.items() if given(args)]
    if args.transport != "streamable-http" and http_only:
        parser.error(f"{http_only[0]} applies to Streamable HTTP only: add --transport streamable-http")
    args.host = "127.0.0.1" if args.host is None else args.host
    args.port = 8000 if args.port is None else args.port

    from . import transport

    security = http_auth = None
    if args.transport == "streamable-http":
        security, http_auth = _http_preflight(args)
    else:
        for signum in (signal.SIGINT, signal.SIGTERM):  # uvicorn (HTTP) shuts down gracefully on its own
            signal.signal(signum, _quit_at_once)
        if sys.stdin.isatty():
            print(TTY_NOTICE, file=sys.stderr, flush=True)

    logs.setup(config.log_level(os.environ))
    log = logging.getLogger("b24_mcp")
    unknown = config.unknown_warning(os.environ)
    if unknown:
        log.warning("%s", unknown)
    from .server import contract_names as tool_names  # with the SDK, which `transport` has loaded

    settings: config.Settings | ConfigError
    try:
        settings = config.load(os.environ, demo=args.demo, tools=tool_names())
    except ConfigError as err:
        for problem in problems_of(err):
            log.error("configuration problem: %s (the tools report it until fixed)", problem)
        settings = err
    log.info("starting over %s: %s", args.transport, _describe(settings))

    if security is not None and isinstance(settings, config.Settings):
        _refuse_if(transport.unusable_redis(settings), status=1)  # a replica's Redis, proven before it serves

    from .server import build_server

    server = build_server(
        settings, **transport.server_auth(http_auth, host=args.host, port=args.port, allowed_hosts=args.allowed_host)
    )
    try:
        if security is None:
            transport.serve_stdio(server)
        else:
            transport.serve_http(server, host=args.host, port=args.port, security=security)
    except transport.BindError as err:
        _refuse_if([str(err)], status=1)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)


_HTTP_OPTIONS: dict[str, Callable[[argparse.Namespace], bool]] = {
    "--host": lambda args: args.host is not None,
    "--port": lambda args: args.port is not None,
    "--allowed-host": lambda args: bool(args.allowed_host),
    "--no-auth": lambda args: bool(args.no_auth),
}


def _http_preflight(args: argparse.Namespace) -> tuple[TransportSecuritySettings, HttpAuthConfig | None]:
    """The Host policy and the bearer-token check to serve with; or exit 2 listing every bad option and setting.

    Checked before logging and settings, so the refusal lines are the only ones: nothing is served."""
    from . import transport

    problems = Problems()
    security = problems.take(lambda: transport.transport_security(args.host, args.allowed_host))
    http_auth = problems.take(lambda: transport.bearer_auth(args.host, args.no_auth, os.environ))
    redis_url = os.environ.get("B24_REDIS_URL", "").strip()
    if redis_url:  # a replica without its shared state must not serve (it is PINGed once the rest is loaded)
        from .team import parse_redis_url

        problems.take(lambda: parse_redis_url(redis_url))
    if security is None or problems.lines:
        problems.take(lambda: config.load(os.environ, demo=args.demo))  # refused anyway: every other bad one too
        _refuse_if(list(dict.fromkeys(problems.lines)), status=2)
    assert security is not None
    return security, http_auth


def _refuse_if(problems: Sequence[str], *, status: int) -> None:
    """Exit with `status`, one `b24-mcp: error:` line per problem (none: carry on)."""
    if problems:
        for problem in problems:
            print(f"b24-mcp: error: {problem}", file=sys.stderr)
        sys.exit(status)


def _describe(settings: config.Settings | ConfigError) -> str:
    """The start-up line's subject: the mode and the portal's host (never a URL: a webhook's holds its code)."""
    if isinstance(settings, ConfigError):
        return "not configured (see the configuration problems above)"
    if settings.demo:
        return f"demo mode, the built-in demo portal {settings.host}"
    return f"{settings.mode} mode, portal {settings.host}"
