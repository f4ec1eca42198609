"""A stand-in Bitrix24 portal: its data and its answers, as pure functions of a request (no sockets, no logging).

The demo (`demo.py`) and the tests' HTTP portal (`tests/portal.py`) both serve it, so they cannot drift apart; a
tool's methods are answered by its `Call.standin`. The data is written as a portal's own serializers write it
where that differs from the docs (`PORTAL_CHAT`); `DOC_CHAT` keeps the docs' example verbatim.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .standin_data import (
    BOT_CODE,
    BOT_ID,
    BOT_TYPES,
    CHATS,
    MEMBERS,
    MESSAGES,
    NULL_USER,
    READER_TYPES,
    USERS,
    detached,
    message,
)
from .standin_events import Chatter, EventQueue, history
from .standin_files import FileStore, StoredFile
from .tools.registry import standin_answers
from .tools.spec import PortalAnswer

SCOPES = ("im", "imbot")  # what the stand-in webhook or app was granted (the `scope` method's answer)
ALL_SCOPES = (  # `scope` with full=true: every scope the portal knows (a selection of Bitrix24's)
    "bizproc", "calendar", "crm", "department", "disk", "entity", "im", "imbot", "imopenlines", "lists", "log",
    "placement", "pull", "sonet_group", "task", "telephony", "user", "user_brief",
)  # fmt: skip


@dataclass
class OAuthApp:
    """A local application's credentials and its first token pair (the pair rotates on every refresh)."""

    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    access_ttl: int = 3600


_ERRORS = {  # code -> (HTTP status, error_description), as the docs spell them
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "expired_token": (401, "The access token provided has expired."),
    "insufficient_scope": (403, "The request requires higher privileges than provided by the webhook token"),
    "BOT_ID_REQUIRED": (400, "Bot ID is required"),
    "BOT_NOT_FOUND": (400, "Bot not found"),
    "BOT_TOKEN_NOT_SPECIFIED": (400, "Bot token is not specified"),
    "BOT_OWNERSHIP_ERROR": (403, "Bot is registered by another application"),
    "BOT_TYPE_NOT_ALLOWED": (403, "Bot type not allowed"),
    "PARAMS_REQUIRED": (400, "Required parameters are missing"),
    "ACCESS_DENIED": (403, "Access denied"),
    "MESSAGE_NOT_FOUND": (400, "Message not found"),
    "MESSAGE_ACCESS_DENIED": (403, "Message access denied"),
    "FILE_NOT_FOUND": (400, "File not found"),
    "FILE_ACCESS_ERROR": (403, "File access error"),
    "SCOPE_ERROR": (400, "Scope error"),
    "USER_NOT_SUBSCRIBED": (400, "User not subscribed"),
    "invalid_request": (400, "Unsupported grant"),
    "invalid_client": (401, "Invalid client credentials"),
    "invalid_grant": (400, "Invalid grant"),
}

# /rest/{user}/{code}/{method}[.json] (webhook) or /rest/{method}[.json] (OAuth).
_REST_PATH = re.compile(r"/rest/(?:(?P<user>[^/]+)/(?P<code>[^/]+)/)?(?P<method>[A-Za-z0-9_.]+?)(?:\.json)?")


def error(code: str) -> PortalAnswer:
    status, description = _ERRORS[code]
    return status, {"error": code, "error_description": description}


def time_block() -> dict[str, Any]:
    """The `time` block of a successful answer, with the per-method budget's reset time."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    return {
        "start": now, "finish": now + 0.001, "duration": 0.001, "processing": 0.0005, "date_start": stamp,
        "date_finish": stamp, "operating": 0.1, "operating_reset_at": int(now) + 600,
    }  # fmt: skip


def _ok(result: Any) -> PortalAnswer:
    return 200, {"result": detached(result), "time": time_block()}


def _int(value: Any) -> int | None:
    """A REST integer as a portal reads one: a JSON number or a numeric string (from a query or a form)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
        return int(value)
    return None


def _bounded(value: Any, low: int, high: int, default: int) -> int:
    """`limit`/`range`: out-of-range values are clamped, unreadable ones give the default."""
    number = _int(value)
    return default if number is None else min(high, max(low, number))


def _truthy(value: Any) -> bool:
    """Booleans arrive as true/false or, from clients without JSON booleans, "Y"/"N" (and "1"/"true" in forms)."""
    return value is True or (isinstance(value, str) and value.strip().lower() in {"y", "1", "true"})


class StandIn:
    """A portal with one bot (`USERS[BOT_ID]`, code `BOT_CODE`) reached by a webhook and/or an OAuth app.

    `answer()` serves REST calls and `token()` serves `/oauth/token/`; both are safe to call from many threads
    (the rotating OAuth tokens are the only state, kept under `lock`).
    """

    def __init__(
        self,
        *,
        bot_token: str,
        webhook_user: int = 1,
        webhook_code: str | None = None,
        oauth: OAuthApp | None = None,
        portal_url: str = "https://portal.example.com",
        bot_type: str = "personal",
        scopes: Iterable[str] = SCOPES,
        chats: Mapping[str, dict[str, Any]] | None = None,
        members: Mapping[str, Sequence[int]] | None = None,
        users: Mapping[int, dict[str, Any]] | None = None,
        messages: Iterable[dict[str, Any]] | None = None,
        files: Mapping[int, StoredFile] | None = None,
    ) -> None:
        if bot_type not in BOT_TYPES:
            raise ValueError(f"bot_type must be one of {BOT_TYPES}")
        self.bot_id = BOT_ID
        self.bot_token = bot_token
        self.bot_type = bot_type
        self.webhook_user = webhook_user
        self.webhook_code = webhook_code  # None: webhook calls are refused, as on a portal without one
        self.oauth = oauth
        self.portal_url = portal_url.rstrip("/")
        self.scopes = tuple(scopes)
        self.chats = dict(CHATS if chats is None else chats)
        self.members = {k: list(v) for k, v in (MEMBERS if members is None else members).items()}
        self.users = dict(USERS if users is None else users)
        self.messages = {m["id"]: m for m in (MESSAGES if messages is None else messages)}
        self._chat_of = {chat["id"]: dialog for dialog, chat in self.chats.items()}  # chatId -> dialogId
        self.files = FileStore(self.portal_url, files)
        # The bot's event queue (imbot.v2.Event.get): its joins and its chats' messages so far, and what follows.
        self.events = EventQueue(lambda: self._bot_entity(extended=True))
        history(
            self.events, self.chats, [d for d in self.chats if self._is_member(d)], self.users, self.messages.values()
        )
        self.chatter = Chatter(self.events, self.chats, self.users, self.messages, message)
        self._methods: dict[str, Callable[[dict[str, Any], bool], PortalAnswer]] = {
            **{method: functools.partial(answer, self) for method, answer in standin_answers().items()},
            "imbot.v2.bot.get": self._bot_get,
            "scope": self._scope,
        }
        # OAuth state, guarded by `lock`: the live pair and what the tests count.
        self.lock = threading.Lock()
        self.access_tokens: set[str] = {oauth.access_token} if oauth else set()
        self.refresh_tokens: set[str] = {oauth.refresh_token} if oauth else set()
        self.refresh_count = 0
        self.invalid_grants = 0

    # -- REST ------------------------------------------------------------------------------------------------
    def answer(self, http_method: str, path: str, query: Mapping[str, str], body: Mapping[str, Any]) -> PortalAnswer:
        """One REST call. A POST's parameters are its query and body together (the body wins), as a portal
        reads them; a GET has only its query."""
        match = _REST_PATH.fullmatch(path)
        if match is None:
            return error("ERROR_METHOD_NOT_FOUND")
        params = {**query, **body} if http_method.upper() != "GET" else dict(query)
        oauth_call = match["user"] is None
        if oauth_call:
            token = params.get("auth")
            if self.oauth is None or not token:
                return error("NO_AUTH_FOUND")
            with self.lock:
                live = token in self.access_tokens
            if not live:
                return error("expired_token")
        elif self.webhook_code is None or (match["user"], match["code"]) != (str(self.webhook_user), self.webhook_code):
            return error("NO_AUTH_FOUND")
        method = match["method"].lower()  # Bitrix24 method names are case-insensitive
        handler = self._methods.get(method)
        if handler is None:
            return error("ERROR_METHOD_NOT_FOUND")
        if method.startswith("imbot.") and "imbot" not in self.scopes:
            return error("insufficient_scope")
        return handler(params, oauth_call)

    def bot_refusal(self, params: dict[str, Any], oauth_call: bool) -> PortalAnswer | None:
        """The checks every imbot.v2 chat method makes first; None when the caller may act as the bot."""
        if params.get("botId") in (None, ""):
            return error("BOT_ID_REQUIRED")
        if _int(params["botId"]) != self.bot_id:
            return error("BOT_NOT_FOUND")
        if not oauth_call:  # with OAuth the app is the bot's owner by its client_id: no botToken
            if not params.get("botToken"):
                return error("BOT_TOKEN_NOT_SPECIFIED")
            if params["botToken"] != self.bot_token:
                return error("BOT_OWNERSHIP_ERROR")
        return None

    # What the tools' answers (`Call.standin`) are made with.
    ok = staticmethod(_ok)
    refuse = staticmethod(error)
    bounded = staticmethod(_bounded)

    def _is_member(self, dialog: str) -> bool:
        return self.bot_id in self.members.get(dialog, ())

    def chat_of_call(self, params: dict[str, Any], oauth_call: bool) -> PortalAnswer | str:
        """The dialog a chat method may read, or the refusal a portal gives (bot checks, then membership)."""
        refusal = self.bot_refusal(params, oauth_call)
        if refusal:
            return refusal
        dialog = str(params.get("dialogId", ""))
        if dialog not in self.chats or not self._is_member(dialog):
            return error("ACCESS_DENIED")
        return dialog

    def readable_message(self, params: dict[str, Any], oauth_call: bool) -> dict[str, Any] | PortalAnswer:
        """The message Chat.Message.get/getContext name, or the error they answer with."""
        refusal = self.bot_refusal(params, oauth_call)
        if refusal:
            return refusal
        if self.bot_type not in READER_TYPES:
            return error("BOT_TYPE_NOT_ALLOWED")
        message = self.messages.get(_int(params.get("messageId")) or 0)
        if message is None:
            return error("MESSAGE_NOT_FOUND")
        if not self._is_member(self._chat_of.get(message["chatId"], "")):
            return error("MESSAGE_ACCESS_DENIED")
        return message

    def readable_file(self, params: dict[str, Any], oauth_call: bool) -> StoredFile | PortalAnswer:
        """The file File.download names, or the error it answers with (the bot must be in the file's chat)."""
        refusal = self.bot_refusal(params, oauth_call)
        if refusal:
            return refusal
        stored = self.files.files.get(_int(params.get("fileId")) or 0)
        if stored is None:
            return error("FILE_NOT_FOUND")
        if not self._is_member(self._chat_of.get(stored.chat_id, "")):
            return error("FILE_ACCESS_ERROR")
        return stored

    def file_link(self, file_id: int) -> str:
        """A one-time download link to the file, as File.download gives one."""
        return self.files.link(file_id)

    def author_of(self, message: dict[str, Any]) -> dict[str, Any]:
        """The user Chat.Message.get gives as a message's author: a NullUser for a system message."""
        return self.users.get(message["authorId"], NULL_USER)

    def _bot_get(self, params: dict[str, Any], oauth_call: bool) -> PortalAnswer:
        bot_id, code = params.get("botId"), params.get("code")
        if bot_id in (None, "") and not code:
            return error("PARAMS_REQUIRED")
        if (bot_id not in (None, "") and _int(bot_id) != self.bot_id) or (code and code != BOT_CODE):
            return error("BOT_NOT_FOUND")
        if not oauth_call and not params.get("botToken"):
            return error("BOT_TOKEN_NOT_SPECIFIED")
        # The owner (our OAuth app, or a webhook call with the bot's token) sees the extended format.
        owner = oauth_call or params.get("botToken") == self.bot_token
        return _ok({"bot": self._bot_entity(extended=owner), "users": [self.users[self.bot_id]]})

    def _bot_entity(self, *, extended: bool) -> dict[str, Any]:
        """entities.md#bot; the owner's counters are counted from the portal's own data."""
        bot: dict[str, Any] = {
            "id": self.bot_id, "code": BOT_CODE, "type": self.bot_type, "isHidden": False,
            "isSupportOpenline": False, "isReactionsEnabled": True, "backgroundId": None, "language": "en",
        }  # fmt: skip
        if extended:
            chats = [dialog for dialog in self.chats if self._is_member(dialog)]
            people = {uid for dialog in chats for uid in self.members[dialog]} - {self.bot_id}
            bot |= {
                # appId: what a portal writes for a webhook's bot, the bot token behind "custom" (never to be shown)
                "moduleId": "rest", "appId": f"custom{self.bot_token}", "eventMode": "fetch",
                "countMessage": sum(1 for m in self.messages.values() if m["authorId"] == self.bot_id),
                "countCommand": 0, "countChat": len(chats), "countUser": len(people),
            }  # fmt: skip
        return bot

    def _scope(self, params: dict[str, Any], oauth_call: bool) -> PortalAnswer:
        return _ok(list(ALL_SCOPES if _truthy(params.get("full")) else self.scopes))

    # -- OAuth -----------------------------------------------------------------------------------------------
    def token(self, params: Mapping[str, str]) -> PortalAnswer:
        """`/oauth/token/` with grant_type=refresh_token. The pair rotates: a used refresh token is dead."""
        oauth = self.oauth
        if oauth is None or params.get("grant_type") != "refresh_token":
            return error("invalid_request")
        if params.get("client_id") != oauth.client_id or params.get("client_secret") != oauth.client_secret:
            return error("invalid_client")
        with self.lock:
            if params.get("refresh_token") not in self.refresh_tokens:
                self.invalid_grants += 1
                return error("invalid_grant")
            self.refresh_count += 1
            access, refresh = f"access{secrets.token_hex(8)}", f"refresh{secrets.token_hex(8)}"
            self.refresh_tokens = {refresh}
            self.access_tokens = {access}
        return 200, {
            "access_token": access, "refresh_token": refresh, "expires": int(time.time()) + oauth.access_ttl,
            "expires_in": oauth.access_ttl, "client_endpoint": f"{self.portal_url}/rest/",
            "server_endpoint": f"{self.portal_url}/oauth/rest/", "member_id": "a1b2c3",
            "scope": ",".join(self.scopes), "status": "L", "user_id": 1,
            "domain": self.portal_url.split("://", 1)[-1],
        }  # fmt: skip

    def expire_access_tokens(self) -> None:
        """Every access token stops working now (the next call gets expired_token and must refresh)."""
        with self.lock:
            self.access_tokens.clear()
