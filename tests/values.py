"""The suite's test secrets and constants, in one place: every test that needs one imports it from here.

CODE and TOKEN are secrets in the tests' eyes: they must never surface in a message, a result or a log line,
so tests search for them verbatim. They are distinct, unusual strings so that a hit is never a coincidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the project (where `python -m b24_mcp` runs from)

CODE = "hookSECRETcode123"  # the webhook code (the secret in B24_WEBHOOK_URL's path)
TOKEN = "botSECRETtoken456"  # the bot's token
BOT_ID = 456
HOST = "acme.bitrix24.com"
HOOK = f"https://{HOST}/rest/1/{CODE}/"  # a webhook URL on a cloud portal that is never contacted (mocked)
MASKED_HOOK = "/rest/1/***/"  # how a webhook URL's path reads once its code is masked

# An OAuth application's credentials and first token pair (the stand-in portal's token endpoint knows them).
OAUTH_CLIENT_ID = "local.test.app"
OAUTH_CLIENT_SECRET = "clientSECRET789"
OAUTH_ACCESS = "accessTOKEN0001"
OAUTH_REFRESH = "refreshTOKEN0001"

CHAT: dict[str, Any] = {"id": 5, "dialogId": "chat5", "name": "Support Chat", "type": "chat", "role": "owner"}


def webhook_vars(url: str = HOOK, **extra: str) -> dict[str, str]:
    """The B24_* variables of webhook mode with the suite's bot and token; `extra` adds or overrides."""
    return {"B24_WEBHOOK_URL": url, "B24_BOT_ID": str(BOT_ID), "B24_BOT_TOKEN": TOKEN, **extra}


def oauth_vars(portal_url: str, **extra: str) -> dict[str, str]:
    """The B24_* variables of OAuth mode against a portal that is also its own token server; `extra` adds."""
    return {
        "B24_PORTAL_URL": portal_url,
        "B24_OAUTH_SERVER": portal_url,
        "B24_ACCESS_TOKEN": OAUTH_ACCESS,
        "B24_REFRESH_TOKEN": OAUTH_REFRESH,
        "B24_CLIENT_ID": OAUTH_CLIENT_ID,
        "B24_CLIENT_SECRET": OAUTH_CLIENT_SECRET,
        "B24_BOT_ID": str(BOT_ID),
        **extra,
    }


def at_once(attempt: int, base: float, cap: float) -> float:
    """A back-off that does not wait (`RetryPolicy(at_once)`): for tests of what is retried, not of how long."""
    return 0.0


# What a client without the SDK says (the raw stdio and HTTP tests, the benches): the protocol version it speaks,
# the Streamable HTTP request headers, and its initialize request.
PROTOCOL_VERSION = "2025-11-25"
HTTP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def initialize(client: str, request_id: int = 1) -> dict[str, Any]:
    """The JSON-RPC initialize request of a client named `client`, in PROTOCOL_VERSION."""
    params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": client, "version": "0"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}
