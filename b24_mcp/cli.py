"""The `b24-mcp` command: read the options, set up logging, load the configuration, serve (on `transport`).

A bad configuration never stops the server from starting, since hosts show a server that fails to start as a
bare "failed": each problem is logged once and the tools return it to the model. Heavy imports (the SDK, httpx)
wait until a path needs them, so `--help`, `--version` and a refused option or HTTP bind answer at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType, SimpleNamespace
from typing import TYPE_CHECKING

from . import logs
from . import settings as config
from .errors import ConfigError, Problems, problems_of
from .variables import unknown_warning

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

    from .team import HttpAuthConfig


TTY_NOTICE = (
    "b24-mcp: this is an MCP stdio server, meant to be started by an MCP host (Claude Code, Cursor, Claude Desktop), "
    "not typed at a terminal; it now waits for JSON-RPC on stdin (Ctrl-C quits). To try it: b24-mcp check --demo. "
    "To add it to a host: see the README."
)
INTERRUPTED = 130  # the shell's status for a process ended by Ctrl-C


def _quit_at_once(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM: end now, or once an OAuth renewal under way is saved (Bitrix24 has rotated the pair,
    and it dies with the process). A stdio server blocked reading stdin would otherwise wait for a line that never
    comes, and then print a traceback."""
    oauth = sys.modules.get("b24_mcp.bitrix24.oauth")  # loaded only if an OAuth session was made
    if oauth is None:
        os._exit(128 + signum)
    oauth.RENEWALS.exit_when_settled(128 + signum)


LAUNCHES = {(): False, ("--demo",): True}  # how hosts start b24-mcp: argv -> --demo


def options(argv: Sequence[str] | None) -> SimpleNamespace:
    """The command line: a host's launch read at once, as the parser reads it (a test keeps the two equal),
    anything else through `command_line`."""
    demo = LAUNCHES.get(tuple(sys.argv[1:] if argv is None else argv))
    if demo is not None:
        return SimpleNamespace(
            demo=demo, transport="stdio", host=None, port=None, allowed_host=[], no_auth=False, command=None
        )
    from .command_line import parse

    return parse(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = options(argv)
    if args.command == "help":
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
    unknown = unknown_warning(os.environ)
    if unknown:
        log.warning("%s", unknown)
    from .contract import contract_names as tool_names  # with the SDK, which `transport` has loaded

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


def _http_preflight(args: SimpleNamespace) -> tuple[TransportSecuritySettings, HttpAuthConfig | None]:
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
