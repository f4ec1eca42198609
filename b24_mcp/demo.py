"""The built-in demo portal: the stand-in portal (`standin.py`) behind an httpx transport.

It plugs in underneath the real client as an httpx transport, so a demo call goes through exactly the code a
real portal call does (request building, JSON parsing, error mapping, the models); only the socket is missing.
No Bitrix24 account is needed: this is what a newcomer and the MCP Inspector try first. What the portal says
lives in `standin.py`, shared with the tests' HTTP portal; this module only translates httpx to and from it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from .settings import DEMO_BOT_TOKEN, DEMO_NOTICE, DEMO_WEBHOOK_URL
from .standin import StandIn
from .standin_data import CHATS
from .standin_files import DOWNLOAD_PATH

__all__ = ["CHATS", "NOTICE", "PORTAL", "answer", "handle", "transport"]

NOTICE = DEMO_NOTICE

_HOOK = urlsplit(DEMO_WEBHOOK_URL)
_USER, _CODE = _HOOK.path.strip("/").split("/")[1:3]  # /rest/{user}/{code}/


def portal() -> StandIn:
    """A demo portal of its own: its event queue is drained (and confirmed) by the server that reads it."""
    return StandIn(
        webhook_user=int(_USER),
        webhook_code=_CODE,
        bot_token=DEMO_BOT_TOKEN,
        portal_url=f"{_HOOK.scheme}://{_HOOK.netloc}",
    )


PORTAL = portal()


def _params(request: httpx.Request) -> dict[str, Any]:
    """The body's parameters: JSON as the client sends them, or a form."""
    raw = request.content
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    return data if isinstance(data, dict) else {}


def answer(portal: StandIn, request: httpx.Request) -> httpx.Response:
    """Answer one request the way `portal` would (the tests use it with portals of their own)."""
    query = dict(request.url.params)
    if request.url.path == DOWNLOAD_PATH and request.method == "GET":  # a file, by File.download's one-time link
        status, headers, data = portal.files.serve(query)
        return httpx.Response(status, content=data, headers=headers)
    if request.url.path.rstrip("/") == "/oauth/token":
        status, body = portal.token({**query, **{k: str(v) for k, v in _params(request).items()}})
    else:
        status, body = portal.answer(request.method, request.url.path, query, _params(request))
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def handle(request: httpx.Request) -> httpx.Response:
    """Answer one request the way the demo portal (bot 456) would."""
    return answer(PORTAL, request)


def transport() -> httpx.MockTransport:
    """A connection's demo portal: each server's journal reads the whole demo history from its own queue."""
    own = portal()
    return httpx.MockTransport(lambda request: answer(own, request))
