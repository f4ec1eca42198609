"""The Bitrix24 REST client: builds each request for the auth mode in use, sends it, reads the answer.

It knows Bitrix24 and nothing of MCP. Every outcome is either the method's `result` or a `B24Error` whose text
is safe to show: Bitrix24's error codes become `PortalError`s with what to do next, and everything else that
can go wrong between here and the portal (refused connections, TLS, timeouts, an HTML page from a proxy, a
truncated body) becomes a `TransportError` naming the portal's host and the HTTP status, never the URL, whose
path holds the webhook code. One `httpx.AsyncClient` serves the whole process, for keep-alive.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import ValidationError

from .config import OAuthConfig, Settings, WebhookAuth
from .errors import B24Error, InputError, PortalError, TransportError, portal_error
from .logs import redact
from .models import Chat

if TYPE_CHECKING:
    from .oauth import OAuthSession

log = logging.getLogger("b24_mcp.client")

GET_CHAT = "imbot.v2.Chat.get"
EXPIRED_CODES = frozenset({"expired_token", "invalid_token"})


def make_http(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The process's one HTTP client. trust_env stays on so SSL_CERT_FILE (an on-premise CA) is honoured."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout),
        transport=transport,
        headers={"Accept": "application/json", "User-Agent": "b24-mcp"},
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
    )


class B24Client:
    """Calls REST methods on one portal; `get_chat` is imbot.v2.Chat.get with its arguments resolved."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, oauth: OAuthSession | None = None) -> None:
        self.settings = settings
        self._http = http
        self._oauth = oauth
        redact.add(settings.secrets)

    @property
    def host(self) -> str:
        return self.settings.host

    async def get_chat(self, dialog_id: str, bot_id: int | None = None, bot_token: str | None = None) -> Chat:
        """imbot.v2.Chat.get. botId/botToken fall back to B24_BOT_ID/B24_BOT_TOKEN; checked before sending."""
        bot_id = bot_id if bot_id is not None else self.settings.bot_id
        if bot_id is None:
            raise InputError(
                "botId is required: pass botId (the bot's id, e.g. 456) or set B24_BOT_ID in the server's environment."
            )
        params: dict[str, Any] = {"botId": bot_id, "dialogId": dialog_id}
        if self.settings.mode == "webhook":
            bot_token = bot_token if bot_token is not None else self.settings.bot_token
            if bot_token is None:
                raise InputError(
                    "botToken is required with webhook authorisation: pass botToken (the token chosen when the bot "
                    "was registered) or set B24_BOT_TOKEN in the server's environment."
                )
            redact.add([bot_token])
            params["botToken"] = bot_token
        result = await self.call(GET_CHAT, params)
        chat = result.get("chat") if isinstance(result, dict) else None
        if not isinstance(chat, dict):
            raise TransportError(f"Bitrix24 at {self.host} answered {GET_CHAT} without result.chat; nothing to show.")
        try:
            return Chat.model_validate(chat)
        except ValidationError as err:
            # Name the fields and the documented types; never echo values (they are the portal's data).
            problems = "; ".join(f"chat.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
            raise TransportError(
                f"Bitrix24 at {self.host} sent a chat that does not match the documented Chat object ({problems}). "
                "This b24-mcp version does not understand it; please report it."
            ) from None

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """One REST call; in OAuth mode an expired access token is renewed once and the call repeated."""
        auth = self.settings.auth
        if isinstance(auth, WebhookAuth):
            return await self._post(f"{auth.url}{method}", params, params)
        assert isinstance(auth, OAuthConfig) and self._oauth is not None
        url = f"{auth.portal_url}/rest/{method}"
        token = await self._oauth.access_token()
        try:
            return await self._post(url, {**params, "auth": token}, params)
        except PortalError as err:
            if err.code not in EXPIRED_CODES:
                raise
        token = await self._oauth.refresh(token)
        return await self._post(url, {**params, "auth": token}, params)

    async def _post(self, url: str, body: dict[str, Any], call: dict[str, Any]) -> Any:
        # httpx's timeout is per phase (connect, each read...): a trickling portal could outlast it many times
        # over. fail_after bounds the whole exchange.
        timeout = self.settings.timeout
        try:
            with anyio.fail_after(timeout):
                response = await self._http.post(url, json=body)
        except TimeoutError:
            raise TransportError(
                f"Bitrix24 at {self.host} did not answer within {timeout:g} s (B24_TIMEOUT); the portal may be "
                "overloaded or unreachable. Try again later."
            ) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        return self._read(response, call)

    def _transport_error(self, exc: httpx.HTTPError) -> TransportError:
        reason = redact(str(exc)) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
            return TransportError(
                f"TLS certificate of {self.host} could not be verified ({reason}). For an on-premise portal with "
                "an internal CA, set SSL_CERT_FILE to that CA's PEM file."
            )
        if isinstance(exc, httpx.ConnectError):
            return TransportError(f"Could not connect to Bitrix24 at {self.host} ({reason}); check the address.")
        return TransportError(f"The connection to Bitrix24 at {self.host} failed ({reason}); try again.")

    def _read(self, response: httpx.Response, call: dict[str, Any]) -> Any:
        status = response.status_code
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("error"):
            code = str(data["error"])
            description = data.get("error_description")
            raise portal_error(
                code,
                redact(description if isinstance(description, str) else ""),
                status=status,
                host=self.host,
                call={k: v for k, v in call.items() if k in ("dialogId", "botId")},
            )
        if not 200 <= status < 300:
            raise TransportError(
                f"Bitrix24 at {self.host} answered HTTP {status} with {_describe(response.content, data)} "
                "instead of a Bitrix24 error; a proxy or the portal itself may be failing. Try again later."
            )
        if not isinstance(data, dict) or "result" not in data:
            raise TransportError(
                f"Bitrix24 at {self.host} answered HTTP {status} with {_describe(response.content, data)} "
                "instead of a Bitrix24 result."
            )
        return data["result"]


def _describe(body: bytes, data: object) -> str:
    """What came back, in a few words, without quoting it."""
    head = body.lstrip()[:200].lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<")):
        return "an HTML page"
    if data is None:
        return f"a body that is not JSON ({len(body)} bytes, perhaps cut short)"
    return "JSON without a 'result' field"


__all__ = ["GET_CHAT", "B24Client", "B24Error", "make_http"]
