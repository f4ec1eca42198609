"""`b24-mcp check`: the doctor. Reads the settings, reaches the portal, and runs get_chat for real.

The last step is a genuine MCP round trip: it starts this same server as a subprocess over stdio with the
SDK's client, exactly as Claude Code or Cursor would, so a green check means a host will work too. Every line
it prints is masked (no code, token or secret), and the verdict names what to fix. Exit status: 0 all good,
1 a problem with the portal or the chat, 2 a configuration problem.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TextIO, TypeVar

import anyio

from . import settings as config
from .errors import ConfigError

PASS_THROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
T = TypeVar("T")
SECRET_VARS = ("B24_BOT_TOKEN", "B24_ACCESS_TOKEN", "B24_REFRESH_TOKEN", "B24_CLIENT_SECRET")


class Report:
    """Aligned, masked lines; a spinner on a terminal while the network is slow."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def line(self, mark: str, text: str) -> None:
        print(f"{mark} {text}", file=self.out, flush=True)

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


def masked_settings(env: Mapping[str, str], settings: config.Settings) -> list[tuple[str, str]]:
    """Each setting in force, secrets shown only as 'set (N characters)'."""
    rows: list[tuple[str, str]] = []
    if settings.demo:
        rows.append(("portal", f"built-in demo portal ({config.DEMO_HOST}), bot 456"))
        return rows
    for name in sorted(k for k in env if k.startswith("B24_")):
        value = env[name].strip()
        if not value:
            continue
        if name in SECRET_VARS:
            shown = f"set ({len(value)} characters)"
        elif name == "B24_WEBHOOK_URL":
            auth = settings.auth
            shown = auth.masked_url if isinstance(auth, config.WebhookConfig) else config.mask_webhook_url(value)
        else:
            shown = value
        rows.append((name, shown))
    defaults = {
        "B24_TIMEOUT": f"{settings.timeout:g} s (default)",
        "B24_RATE_LIMIT": f"{settings.rate_limit:g}/s (default)",
        "B24_RATE_BURST": f"{settings.rate_burst} (default)",
    }
    rows += [(k, v) for k, v in defaults.items() if not env.get(k, "").strip()]
    return rows


def spawn_env(env: Mapping[str, str]) -> dict[str, str]:
    """What the spawned server needs: B24_* and the TLS/proxy variables (the SDK passes neither by itself)."""
    wanted = set(PASS_THROUGH) | {v.lower() for v in PASS_THROUGH}
    return {k: v for k, v in env.items() if k.startswith("B24_") or k in wanted}


async def _reach(settings: config.Settings) -> str:
    """Any HTTP answer from the portal's address proves DNS, TCP and TLS (with SSL_CERT_FILE) work."""
    import httpx

    from .wire import make_http, network_error

    origin = settings.auth.origin
    async with make_http(settings.timeout) as http:
        started = time.monotonic()
        try:
            response = await http.get(origin + "/", follow_redirects=False)
        except httpx.HTTPError as exc:
            raise network_error(settings.host, exc) from None
    return f"{settings.host} answered HTTP {response.status_code} in {(time.monotonic() - started) * 1000:.0f} ms"


async def _round_trip(argv: list[str], env: dict[str, str], dialog: str | None) -> tuple[bool, str, str | None, str]:
    """Start b24-mcp over stdio, list its tools, and (with a dialog) call get_chat and get_messages for real.

    Returns (get_chat succeeded, its first text block, its Bitrix24 error code, what get_messages said)."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from .tools import CODE_META

    params = StdioServerParameters(command=sys.executable, args=["-m", "b24_mcp", *argv], env=env)
    # The server's stderr is kept aside and shown only if the round trip itself fails.
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                tools = [t.name for t in (await client.list_tools()).tools]
                if "get_chat" not in tools:
                    return False, f"the server lists {tools}, not get_chat", None, ""
                if dialog is None:
                    listed = ", ".join(tools)
                    return True, f"server started over stdio and lists {listed} (pass --dialog chatN)", None, ""
                result = await client.call_tool("get_chat", {"dialogId": dialog})
                messages = None
                if not result.is_error:
                    messages = await client.call_tool("get_messages", {"dialogId": dialog, "range": 1})
        except Exception as err:
            errlog.seek(0)
            tail = " | ".join(errlog.read().strip().splitlines()[-3:])
            raise RuntimeError(f"{type(err).__name__}: {err}; server stderr: {tail or '(empty)'}") from None
    text = "\n    ".join(getattr(block, "text", "") for block in result.content[:1]).replace("\n", "\n    ")
    code = (result.meta or {}).get(CODE_META)
    reading = ""
    if messages is not None:
        if not messages.is_error:
            reading = "the bot can read this chat's messages (get_messages works)"
        else:
            said = getattr(messages.content[0], "text", "") if messages.content else ""
            reading = f"the bot cannot read messages here: {said}"
    return not result.is_error, text, code if isinstance(code, str) else None, reading


def run(argv: list[str], *, demo: bool, dialog: str | None, env: Mapping[str, str], out: TextIO) -> int:
    return anyio.run(_run, argv, demo, dialog, env, out)


async def _run(argv: list[str], demo: bool, dialog: str | None, env: Mapping[str, str], out: TextIO) -> int:
    report = Report(out)
    try:
        settings = config.load(env, demo=demo)
    except ConfigError as err:
        report.line("✗", f"configuration: {err}")
        report.line("→", "Verdict: fix that setting in the MCP server's env block (see the README), then run again.")
        return 2
    report.line("✓", f"configuration: {'demo' if settings.demo else settings.mode} mode")
    width = max(len(name) for name, _ in masked_settings(env, settings))
    for name, shown in masked_settings(env, settings):
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
    try:
        ok, said, code, reading = await report.step(
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
    advice = _advice(code, settings.mode)
    report.line("→", f"Verdict: get_chat failed; the message above says what to fix.{' ' + advice if advice else ''}")
    return 1


def _advice(code: str | None, mode: str) -> str:
    """The next step for the Bitrix24 code the server put in the result's _meta (no searching of message text)."""
    if code == "ACCESS_DENIED":
        return "Add the bot to that chat, or try a chat the bot is in."
    if code in ("NO_AUTH_FOUND", "insufficient_scope", "invalid_token", "expired_token"):
        if mode == "oauth":
            return (
                "Re-check the OAuth settings (B24_PORTAL_URL, B24_CLIENT_ID, B24_CLIENT_SECRET, the tokens and "
                "B24_TOKEN_FILE) and that the app has the imbot permission."
            )
        return "Re-check the webhook (B24_WEBHOOK_URL) and that it has the imbot permission."
    if code is not None and code.startswith("BOT_"):
        return "Re-check B24_BOT_ID and B24_BOT_TOKEN."
    return ""
