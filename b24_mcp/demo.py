"""The built-in demo portal: a few sample chats answered the way imbot.v2.Chat.get answers.

It plugs in underneath the real client as an httpx transport, so a demo call goes through exactly the code a
real portal call does (request building, JSON parsing, error mapping, the Chat model); only the socket is
missing. No Bitrix24 account is needed: this is what a newcomer and the MCP Inspector try first.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from .settings import DEMO_BOT_ID, DEMO_BOT_TOKEN, DEMO_WEBHOOK_URL

NOTICE = "DEMO DATA from the built-in demo portal (b24-mcp --demo), not a real Bitrix24 account."

_BASE: dict[str, Any] = {
    "description": "",
    "messageType": "C",
    "owner": DEMO_BOT_ID,
    "color": "#4ba984",
    "avatar": "",
    "extranet": False,
    "containsCollaber": False,
    "entityType": "",
    "entityId": "",
    "entityData1": "",
    "entityData2": "",
    "entityData3": "",
    "entityLink": {},
    "diskFolderId": None,
    "role": "member",
    "permissions": {},
    "muteList": [],
    "parentChatId": None,
    "parentMessageId": None,
    "isNew": False,
    "textFieldEnabled": "Y",
    "backgroundId": None,
    "lastMessageViews": "{}",
    "managerList": [],
    "markedId": None,
    "public": "",
    "unreadId": None,
}

# dialogId -> chat; "member" False means the bot is not in it (ACCESS_DENIED, as on a real portal).
CHATS: dict[str, dict[str, Any]] = {
    "chat5": {
        **_BASE,
        "id": 5,
        "dialogId": "chat5",
        "name": "Support Chat",
        "type": "chat",
        "role": "owner",
        "diskFolderId": 42,
        "dateCreate": "2025-01-15T10:00:00+01:00",
        "lastMessageId": 789,
        "lastId": 789,
        "messageCount": 15,
        "userCounter": 3,
    },
    "chat12": {
        **_BASE,
        "id": 12,
        "dialogId": "chat12",
        "name": "Release planning",
        "description": "Dates and owners for the next release",
        "type": "open",
        "messageType": "O",
        "owner": 1,
        "color": "#ab7761",
        "managerList": [1],
        "muteList": [7],
        "dateCreate": "2025-03-02T09:30:00+01:00",
        "lastMessageId": 2210,
        "lastId": 2201,
        "unreadId": 2202,
        "messageCount": 342,
        "userCounter": 11,
    },
    "1": {
        **_BASE,
        "id": 31,
        "dialogId": "1",
        "name": "Anna Petrova",
        "type": "private",
        "messageType": "P",
        "owner": 1,
        "color": None,
        "dateCreate": "2025-02-10T14:12:00+01:00",
        "lastMessageId": 905,
        "lastId": 905,
        "messageCount": 27,
        "userCounter": 2,
    },
    "chat7": {**_BASE, "id": 7, "dialogId": "chat7", "name": "Board (private)", "member": False},
}


def _answer(status: int, body: dict[str, Any]) -> httpx.Response:
    now = time.time()
    if status == 200:
        body = {
            **body,
            "time": {
                "start": now,
                "finish": now,
                "duration": 0.0,
                "processing": 0.0,
                "operating": 0,
                "operating_reset_at": int(now) + 600,
            },
        }
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _error(status: int, code: str, description: str) -> httpx.Response:
    return _answer(status, {"error": code, "error_description": description})


def handle(request: httpx.Request) -> httpx.Response:
    """Answer one REST request the way a portal with the demo bot (id 456) would."""
    prefix = DEMO_WEBHOOK_URL.rstrip("/")
    url = str(request.url)
    if not url.startswith(prefix + "/"):
        return _error(401, "NO_AUTH_FOUND", "Wrong authorization data")
    method = url[len(prefix) + 1 :].removesuffix(".json")
    if method != "imbot.v2.Chat.get":
        return _error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    try:
        params = json.loads(request.content or b"{}")
    except ValueError:
        params = {}
    if "botId" not in params:
        return _error(400, "BOT_ID_REQUIRED", "Bot ID is required")
    if params["botId"] != DEMO_BOT_ID:
        return _error(400, "BOT_NOT_FOUND", "Bot not found")
    if not params.get("botToken"):
        return _error(400, "BOT_TOKEN_NOT_SPECIFIED", "Bot token is not specified")
    if params["botToken"] != DEMO_BOT_TOKEN:
        return _error(403, "BOT_OWNERSHIP_ERROR", "Bot is registered by another application")
    chat = CHATS.get(str(params.get("dialogId")))
    if chat is None or chat.get("member") is False:
        return _error(403, "ACCESS_DENIED", "Access denied")
    return _answer(200, {"result": {"chat": chat}})


def transport() -> httpx.MockTransport:
    return httpx.MockTransport(handle)
