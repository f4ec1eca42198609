"""`b24-mcp check`: the doctor. Reads the settings, reaches the portal, proves the credentials, runs get_chat.

The last step is a genuine MCP round trip: this same server, started as a subprocess over stdio with the SDK's
client as a host would start it, so a green check means a host will work too. Every line it prints is masked.
Exit status: 0 all good, 1 a problem with Redis, the portal, the credentials, the bot or the chat, 2 the settings.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TextIO, TypeVar

import anyio

from . import settings as config
from .contract import contract_names as tool_names
from .errors import ConfigError, printable, problems_of
from .forms import mask_webhook_url
from .paths import check_ca
from .variables import VARIABLES, unknown_variables

if TYPE_CHECKING:
    from .bitrix24.client import B24Client
    from .team import RedisConfig

PROXIES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")  # httpx's, not b24-mcp's: never shown
PASS_THROUGH = tuple(v.name for v in VARIABLES if v.group == "tls") + PROXIES
T = TypeVar("T")
READERS = ("personal", "supervisor")  # the bot types that may read messages (overview-bot-types.md)


class Report:
    """Aligned, masked lines; a spinner on a terminal while the network is slow."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def line(self, mark: str, text: str) -> None:
        """A line of the report; what a portal wrote in it cannot move the cursor, recolour or retitle the terminal."""
        shown = "\n".join(printable(part) for part in text.split("\n"))
        print(f"{mark} {shown}", file=self.out, flush=True)

    async def step(self, label: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` with a progress display; returns its one-line result, raises its error."""
        started = time.monotonic()
        if not self.tty:
            print(f"… {label}", file=self.out, flush=True)
            return await work()
        async with anyio.create_task_group() as tg:

            async def spin() -> None:
                frames = "|/-\\"
                i = 0
                while True:
                    elapsed = time.monotonic() - started
                    print(f"\r{frames[i % 4]} {label} ({elapsed:.1f} s)", end="", file=self.out, flush=True)
                    i += 1
                    await anyio.sleep(0.1)

            tg.start_soon(spin)
            try:
                result = await work()
            finally:
                tg.cancel_scope.cancel()
                print("\r\033[K", end="", file=self.out, flush=True)
        return result


def set_secret(value: str) -> str:
    """A secret, shown only as set, with its length (a truncated paste shows up as a short one)."""
    return f"set ({len(value)} character{'' if len(value) == 1 else 's'})"


def masked_settings(env: Mapping[str, str], settings: config.Settings) -> list[tuple[str, str]]:
    """Each setting in force, in the table's order; secrets shown only as 'set (N characters)'."""
    if settings.demo:
        return [("portal", f"built-in demo portal ({config.DEMO_HOST}), bot {config.DEMO_BOT_ID}")]
    defaults = {
        "B24_TIMEOUT": f"{settings.timeout:g} s (default)",
        "B24_RATE_LIMIT": f"{settings.rate_limit:g}/s (default)",
        "B24_RATE_BURST": f"{settings.rate_burst} (default)",
    }
    auth = settings.auth
    token_file = config.token_file_of(auth) if isinstance(auth, config.OAuthConfig) else None
    made = token_file is not None and token_file.exists()  # looked at once, said either way below
    if isinstance(auth, config.OAuthConfig):
        defaults["B24_OAUTH_SERVER"] = f"{auth.oauth_server} (default)"
        state = "exists" if made else "not created yet: written at the first token refresh"
        defaults["B24_TOKEN_FILE"] = f"{token_file} (default; {state})"
    rows: list[tuple[str, str]] = []
    for var in VARIABLES:
        value = env.get(var.name, "").strip()
        if not value:
            if var.name in defaults:
                rows.append((var.name, defaults[var.name]))
            continue
        if var.shown == "secret":
            shown = set_secret(value)
        elif var.shown == "masked":
            shown = auth.masked_url if isinstance(auth, config.WebhookConfig) else mask_webhook_url(value)
        elif var.name == "SSL_CERT_DIR" and env.get("SSL_CERT_FILE"):
            shown = f"{value} (not used: SSL_CERT_FILE is set)"
        elif var.name == "B24_TOKEN_FILE" and token_file is not None:
            shown = f"{token_file} ({'exists' if made else 'not created yet'})"
        else:
            shown = value
        rows.append((var.name, shown))
    return rows


def spawn_env(env: Mapping[str, str]) -> dict[str, str]:
    """What the spawned server needs: B24_* and the TLS/proxy variables (the SDK passes neither by itself); not the
    journal's, which check reports itself: the round trip must not read (and so confirm) the bot's queue."""
    wanted = set(PASS_THROUGH) | {v.lower() for v in PASS_THROUGH}
    return {k: v for k, v in env.items() if (k.startswith("B24_") and not k.startswith("B24_JOURNAL")) or k in wanted}


async def _reach(settings: config.Settings) -> str:
    """Any HTTP answer from the portal's address proves DNS, TCP and TLS (with SSL_CERT_FILE) work."""
    import httpx

    from .bitrix24.network import make_http, network_error

    origin = settings.auth.origin
    async with make_http(settings.timeout) as http:
        started = time.monotonic()
        try:
            response = await http.get(origin + "/", follow_redirects=False)
        except httpx.HTTPError as exc:
            raise network_error(settings.host, exc) from None
    return f"{settings.host} answered HTTP {response.status_code} in {(time.monotonic() - started) * 1000:.0f} ms"


async def _ping(redis_config: RedisConfig) -> str:
    """One PING proves the replicas' Redis (address, password, database), which every call goes through first:
    checked before the credentials, or a bad one would read as refused credentials."""
    from .bitrix24.redis_state import Redis

    redis = Redis(redis_config)
    started = time.monotonic()
    try:
        await redis.ping()
    finally:
        await redis.aclose()
    return f"{redis_config.where} answered PING in {(time.monotonic() - started) * 1000:.0f} ms"


async def _round_trip(argv: list[str], env: dict[str, str], dialog: str | None) -> tuple[bool, str, str]:
    """Start b24-mcp over stdio, list its tools, and (with a dialog) call get_chat and get_messages for real.

    Returns (get_chat succeeded, its first text block, what get_messages said)."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "b24_mcp", *argv], env=env)
    # The server's stderr is kept aside and shown only if the round trip itself fails.
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                tools = [t.name for t in (await client.list_tools()).tools]
                if "get_chat" not in tools:
                    return False, f"the server lists {tools}, not get_chat", ""
                if dialog is None:
                    listed = ", ".join(tools)
                    return True, f"server started over stdio and lists {listed} (pass --dialog chatN)", ""
                result = await client.call_tool("get_chat", {"dialogId": dialog})
                messages = None
                if not result.is_error:
                    messages = await client.call_tool("get_messages", {"dialogId": dialog, "range": 1})
        except Exception as err:
            errlog.seek(0)
            tail = " | ".join(errlog.read().strip().splitlines()[-3:])
            raise RuntimeError(f"{type(err).__name__}: {err}; server stderr: {tail or '(empty)'}") from None
    text = "\n    ".join(getattr(block, "text", "") for block in result.content[:1]).replace("\n", "\n    ")
    reading = ""
    if messages is not None:
        if not messages.is_error:
            reading = "the bot can read this chat's messages (get_messages works)"
        else:
            said = getattr(messages.content[0], "text", "") if messages.content else ""
            reading = f"the bot cannot read messages here: {said}"
    return not result.is_error, text, reading


def run(argv: list[str], *, demo: bool, dialog: str | None, env: Mapping[str, str], out: TextIO) -> int:
    return anyio.run(_run, argv, demo, dialog, env, out)


async def _run(argv: list[str], demo: bool, dialog: str | None, env: Mapping[str, str], out: TextIO) -> int:
    report = Report(out)
    for name, guess in unknown_variables(env):
        report.line(
            "!", f"{name} is not a b24-mcp variable and is ignored" + (f": did you mean {guess}?" if guess else "")
        )
    try:
        settings = config.load(env, demo=demo, tools=tool_names())
        if not demo:
            check_ca(env, load=True)  # parsed as httpx will, which start-up skips for speed
    except ConfigError as err:
        for problem in problems_of(err):
            report.line("✗", f"configuration: {problem}")
        report.line(
            "→", "Verdict: fix the settings above in the MCP server's env block (see the README), then run again."
        )
        return 2
    report.line("✓", f"configuration: {'demo' if settings.demo else settings.mode} mode")
    rows = masked_settings(env, settings)
    width = max(len(name) for name, _ in rows)
    for name, shown in rows:
        report.line(" ", f"  {name.ljust(width)}  {shown}")
    if settings.demo and dialog is None:
        dialog = "chat5"
    if not settings.demo:
        try:
            report.line("✓", "portal: " + await report.step(f"reaching {settings.host}", lambda: _reach(settings)))
        except Exception as err:
            report.line("✗", f"portal: {err}")
            report.line("→", "Verdict: the portal cannot be reached from here; fix the address or network first.")
            return 1
    redis_config = settings.team.redis if settings.team is not None else None
    if redis_config is not None:
        from .errors import UpstreamError

        try:
            label = f"reaching Redis at {redis_config.where}"
            report.line("✓", "Redis: " + await report.step(label, lambda: _ping(redis_config)))
        except UpstreamError as err:
            report.line("✗", f"Redis: {err}")
            report.line("→", "Verdict: Redis cannot be used; start it or fix B24_REDIS_URL, then run again.")
            return 1
    failed = await _prove(settings, report)
    if failed is not None:
        return failed
    try:
        ok, said, reading = await report.step(
            "starting b24-mcp over stdio and calling get_chat" if dialog else "starting b24-mcp over stdio",
            lambda: _round_trip(argv, spawn_env(env), dialog),
        )
    except Exception as err:
        report.line("✗", f"MCP round trip: the server did not answer ({err})")
        report.line("→", "Verdict: run `b24-mcp` by hand with B24_LOG_LEVEL=DEBUG and read its stderr.")
        return 1
    label = f"get_chat({dialog})" if dialog else "MCP round trip"
    report.line("✓" if ok else "✗", f"{label}: {said}")
    if reading:
        report.line("!" if "cannot" in reading.split(":")[0] else "✓", f"get_messages({dialog}): {reading}")
    if ok:
        report.line("→", "Verdict: all good. Add the server to your MCP host (see the README) and ask about a chat.")
        return 0
    report.line("→", "Verdict: get_chat failed; the message above says what to fix.")
    return 1


async def _prove(settings: config.Settings, report: Report) -> int | None:
    """Prove the credentials (`scope`) and the bot (`imbot.v2.Bot.get`); an exit status if either fails."""
    from .app import make_client
    from .bitrix24.network import make_http
    from .errors import B24Error

    transport = None
    if settings.demo:
        from . import demo

        transport = demo.transport()
    try:
        async with make_http(settings.timeout, transport) as http:
            client = make_client(settings, http)
            label = "proving the credentials (scope)"
            try:
                scopes = await report.step(label, client.scopes)
            except B24Error as err:
                report.line("✗", f"credentials: {err}")
                report.line("→", "Verdict: the portal refused the credentials; the message above says what to fix.")
                return 1
            if "imbot" not in scopes:
                report.line("✗", f"credentials: {_no_imbot(settings, scopes)}")
                report.line("→", "Verdict: add the imbot permission, then run again.")
                return 1
            what = "the webhook" if settings.mode == "webhook" else "the application's token"
            report.line("✓", f"credentials: {settings.host} accepted {what}; its permissions include imbot")
            failed = await _prove_bot(settings, client, report)
            if failed is None:
                await _journal(settings, client, report)
            return failed
    except ConfigError as err:  # the HTTP client could not be made (a proxy setting httpx cannot use)
        report.line("✗", f"configuration: {err}")
        report.line("→", "Verdict: fix that setting, then run again.")
        return 2


async def _prove_bot(settings: config.Settings, client: B24Client, report: Report) -> int | None:
    from .errors import B24Error, clean_text

    if settings.bot_id is None:
        report.line("!", "bot: B24_BOT_ID is not set, so every tool call must pass botId; set it to check the bot")
        return None
    if settings.mode == "webhook" and settings.bot_token is None:
        report.line(
            "!", "bot: B24_BOT_TOKEN is not set, so every tool call must pass botToken; set it to check the bot"
        )
        return None
    who = f"bot {settings.bot_id}"
    try:
        bot = await report.step(f"asking imbot.v2.Bot.get about {who}", client.get_bot)
    except B24Error as err:
        report.line("✗", f"{who}: {err}")
        report.line("→", "Verdict: the bot cannot be used as configured; the message above says what to fix.")
        return 1
    extended = bot.model_extra or {}
    if not {"moduleId", "eventMode"} & set(extended):
        # Bot.get answers its owner in the extended format, anyone else in the brief one.
        why = (
            "B24_BOT_TOKEN is not this bot's token, or another webhook or application registered the bot"
            if settings.mode == "webhook"
            else "another application registered the bot"
        )
        report.line(
            "✗",
            f"{who}: Bitrix24 answered in the brief format it gives to those who do not own the bot: {why}; "
            "every call would fail with BOT_OWNERSHIP_ERROR",
        )
        report.line("→", "Verdict: use the token chosen when this bot was registered, or a bot registered by you.")
        return 1
    mode = extended.get("eventMode")
    shown_mode = clean_text(mode, 20) if isinstance(mode, str) else "not given"
    if settings.journal is not None and mode != "fetch":
        report.line(
            "!",
            f"{who}: eventMode {shown_mode}, so imbot.v2.Event.get has no events for the journal (B24_JOURNAL=on); "
            'register the bot with fields.eventMode "fetch", or turn the journal off',
        )
    kind = clean_text(bot.type, 40) if isinstance(bot.type, str) else None
    code = clean_text(bot.code, 60) if isinstance(bot.code, str) else None
    named = f"{who} ({code})" if code else who
    if kind in READERS:
        report.line("✓", f"{named}: type {kind}; it can read the messages of the chats it is in")
    else:
        report.line(
            "!",
            f"{named}: type {kind or 'not given'}; get_chat and get_chat_members work, but reading messages "
            "(get_messages, get_message) needs a personal or supervisor bot: register one with fields.type "
            "'personal' (see the README)",
        )
    return None


async def _journal(settings: config.Settings, client: B24Client, report: Report) -> None:
    """Whether the journal is on, where, what it holds and how far behind the queue it is (the demo's is drained
    here, into memory, as its server drains it)."""
    if settings.journal is None:
        report.line("✓", "journal: off (B24_JOURNAL=on keeps one for list_chats, get_updates, search_messages)")
        return
    if settings.team is not None and settings.team.redis is not None:
        report.line("✓", f"journal: on, shared by the replicas through Redis at {settings.team.redis.where}")
        return
    from .app import make_inbox
    from .paths import default_journal_file

    path = settings.journal.file or default_journal_file(settings.host, settings.bot_id)
    if not settings.demo and not path.exists():  # check makes no file: the server does, when it reads the queue
        report.line("✓", f"journal: on, {path}; not made yet (the server makes it when it first reads the queue)")
        return
    inbox = make_inbox(settings, lambda: client)
    assert inbox is not None
    try:
        if settings.demo:
            await report.step("reading the bot's event queue (imbot.v2.Event.get)", inbox.drainer.drain)
        stats = inbox.journal.stats()
    finally:
        inbox.close()
    where = "in memory" if inbox.journal.path == ":memory:" else inbox.journal.path
    if settings.demo:
        behind = "the demo portal's queue read through"
    elif stats["drained_at"] is None:
        behind = "the queue was never read yet (the server reads it once it runs)"
    else:
        ago = max(0.0, time.time() - stats["drained_at"])
        behind = f"the queue was read {ago:.0f} s ago" + (", with more events waiting" if stats["behind"] else "")
    report.line("✓", f"journal: on, {where}; {stats['chats']} chats, {stats['messages']} messages; {behind}")


def _no_imbot(settings: config.Settings, scopes: list[str]) -> str:
    """Which permission to tick, and where, when `scope` lacks imbot."""
    from .errors import clean_text

    has = ", ".join(clean_text(s, 40) for s in scopes[:20]) or "none"
    if settings.mode == "webhook":
        return (
            f"the webhook works but lacks the imbot permission (it has: {has}). In Bitrix24 open Developer "
            "resources → Other → Inbound webhook, edit this webhook, tick imbot and save; its URL stays the same."
        )
    return (
        f"the application's token works but lacks the imbot permission (it has: {has}). Edit the local application "
        "(Developer resources → Other → Local application), tick imbot and save, then reinstall it and put the new "
        "tokens in B24_ACCESS_TOKEN and B24_REFRESH_TOKEN."
    )
