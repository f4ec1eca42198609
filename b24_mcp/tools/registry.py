"""The tools, listed once: the server, the resources, the stand-in portal's methods, the warm-up and the contract
all derive from `TOOLS`. A new tool is a new module, its line here, and its test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import get_chat, get_chat_members, get_file, get_message, get_messages, get_updates, list_chats, search_messages
from .spec import Call, StandInAnswer, ToolSpec

TOOLS: list[ToolSpec] = [
    get_chat.TOOL,
    get_chat_members.TOOL,
    get_messages.TOOL,
    get_message.TOOL,
    get_file.TOOL,
    list_chats.TOOL,
    get_updates.TOOL,
    search_messages.TOOL,
]
RESOURCES = [tool for tool in TOOLS if tool.resource is not None]


def names() -> list[str]:
    """What B24_TOOLS may choose from."""
    return [tool.name for tool in TOOLS]


def calls(tools: Sequence[ToolSpec] = TOOLS) -> dict[str, Call]:
    """Every Bitrix24 method these tools (all of them, by default) call, by name."""
    return {call.method: call for tool in tools for call in tool.calls}


def standin_answers() -> dict[str, StandInAnswer]:
    """How the stand-in portal answers each of those methods (names lower-cased: Bitrix24 ignores their case)."""
    return {method.lower(): call.standin for method, call in calls().items()}


def ready(served: Sequence[str] | None, journal: bool) -> list[Any]:
    """Before the first call: the result types of the served tools' Bitrix24 calls, for the client to build
    parsers for. An inbox tool without the journal makes no call (it answers from its `run`): nothing of it."""
    tools = [t for t in TOOLS if (served is None or t.name in served) and (journal or t.inbox is None)]
    return [call.result for call in calls(tools).values()]
