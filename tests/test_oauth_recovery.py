"""OAuth recovery seen from the client: any auth rejection re-reads the shared pair first, renews only if needed.

Bitrix24 revokes the previous access token at refresh and answers it with NO_AUTH_FOUND (live portals also say
invalid_token or expired_token). A window whose token another window rotated must recover on any of the three
without spending a refresh token, and a token still rejected after renewing must be explained in OAuth terms.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from b24_mcp import settings
from b24_mcp.app import make_auth
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.token_server import TokenPair
from b24_mcp.errors import PortalError
from b24_mcp.tools.get_chat import read_chat

pytestmark = pytest.mark.anyio

CHAT = {"id": 5, "dialogId": "chat5"}


class Portal:
    """Accepts only `live` as the access token; rejects others with `code`. Counts portal and token requests."""

    def __init__(self, live: str, code: str, accept_renewed: bool = True) -> None:
        self.live, self.code, self.accept_renewed = live, code, accept_renewed
        self.rest: list[str] = []
        self.refreshes = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/oauth/token"):
            self.refreshes += 1
            form = dict(parse_qsl(request.content.decode()))
            new = f"access{self.refreshes}x"
            if self.accept_renewed:
                self.live = new
            return httpx.Response(200, json={"access_token": new, "refresh_token": f"r{form['refresh_token']}"})
        token = json.loads(request.content)["auth"]
        self.rest.append(token)
        if token != self.live:
            return httpx.Response(401, json={"error": self.code, "error_description": "Invalid access token"})
        return httpx.Response(200, json={"result": {"chat": CHAT}})


def client(tmp_path: Path, portal: Portal) -> tuple[B24Client, Any]:
    s = settings.load(
        {
            "B24_PORTAL_URL": "https://acme.bitrix24.com",
            "B24_ACCESS_TOKEN": "seedACCESS",
            "B24_REFRESH_TOKEN": "seedREFRESH",
            "B24_CLIENT_ID": "local.app",
            "B24_CLIENT_SECRET": "clientSECRET",
            "B24_TOKEN_FILE": str(tmp_path / "tokens.json"),
            "B24_BOT_ID": "456",
            "B24_RATE_BURST": "50",
        }
    )
    http = make_http(s.timeout, httpx.MockTransport(portal))
    auth = make_auth(s, http)
    return B24Client(s, http, auth), auth


@pytest.mark.parametrize("code", ["NO_AUTH_FOUND", "invalid_token", "expired_token"])
async def test_a_token_rotated_by_another_window_is_picked_up_without_a_refresh(tmp_path: Path, code: str) -> None:
    portal = Portal(live="seedACCESS", code=code)
    _, auth_a = client(tmp_path, portal)
    window_b, _ = client(tmp_path, portal)
    assert (await read_chat(window_b, "chat5")).id == 5  # B now holds the seed token
    await auth_a.session.recover("seedACCESS", time.monotonic() + 10)  # A renews: the seed token is revoked
    assert portal.refreshes == 1
    assert (await read_chat(window_b, "chat5")).id == 5
    assert portal.refreshes == 1  # B re-read the shared pair instead of spending the refresh token again
    assert portal.rest[-2:] == ["seedACCESS", portal.live]


async def test_a_token_still_rejected_after_renewing_is_explained_in_oauth_terms(tmp_path: Path) -> None:
    portal = Portal(live="never", code="NO_AUTH_FOUND", accept_renewed=False)
    window, _ = client(tmp_path, portal)
    with pytest.raises(PortalError) as info:
        await read_chat(window, "chat5")
    message = str(info.value)
    assert portal.refreshes == 1 and len(portal.rest) == 2  # one renewal, one repeat, then a verdict
    assert "B24_ACCESS_TOKEN" in message and "B24_TOKEN_FILE" in message
    assert "B24_WEBHOOK_URL" not in message and "seedACCESS" not in message


def test_token_pair_repr_hides_tokens() -> None:
    assert "secretA" not in repr(TokenPair("secretA", "secretR"))
