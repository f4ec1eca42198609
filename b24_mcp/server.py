"""The MCP tool layer: one tool, `get_chat`, over the Bitrix24 client.

Kept thin on purpose: it checks the arguments, asks the client, and turns the outcome into a result. Every
failure the model may see is built by `tool_error`, the one place an `isError` result is made, so each is
worded the same way and passes through the secret redactor. The Bitrix24 client (and httpx with it) is built on
the first call, not at start-up: hosts launch every configured server at once, and start-up time is felt.
The tool's arguments are typed `Any` with hand-written JSON schemas so that the SDK's own validation, whose
messages quote the input (a botToken, say), never runs; our checks name the field and never echo a secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import WithJsonSchema

from .errors import B24Error, ConfigError, InputError
from .logs import redact
from .models import DIALOG_ID_FORM, Chat, check_bot_id, check_bot_token, check_dialog_id
from .settings import Settings

if TYPE_CHECKING:
    import httpx

    from .client import B24Client, OnWait

log = logging.getLogger("b24_mcp.server")

try:
    __version__ = version("b24-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

CHAT_URI = "bitrix24://chat/{dialogId}"
UNEXPECTED = "b24-mcp failed unexpectedly (a bug); the details are in the server's log."

INSTRUCTIONS = (
    "Reads Bitrix24 chats through a chat bot. Use get_chat with a dialogId ('chat5' for a group chat, '123' for the "
    "personal chat with user 123) to see a chat's name, type, members, message count, owner and the bot's role. "
    "The bot must be a participant of the chat."
)

GET_CHAT_DESCRIPTION = f"""Get one Bitrix24 chat (REST method imbot.v2.Chat.get) as the chat bot sees it: name, \
description, type, the bot's role, member and message counts, owner, managers, creation date, last message id.

dialogId says which chat: {DIALOG_ID_FORM}. It appears in Bitrix24 chat links (…/online/?IM_DIALOG=chat5) and in \
bot events (DIALOG_ID). The bot must be a participant of the chat; otherwise Bitrix24 answers ACCESS_DENIED and \
someone has to add the bot to the chat first.

botId and botToken are normally preconfigured by the server (B24_BOT_ID, B24_BOT_TOKEN): leave them out unless \
the user names another bot.

Returns the Chat object as structured content, with Bitrix24's own field names, plus a one-line summary. On \
failure the result is an error that names the Bitrix24 code or the argument at fault and what to do: fix a \
malformed argument and call again; for ACCESS_DENIED, BOT_NOT_FOUND or BOT_OWNERSHIP_ERROR tell the user what \
the message says rather than retrying; QUERY_LIMIT_EXCEEDED means wait a little and try once more. Example: \
get_chat(dialogId="chat5")."""

DialogIdArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "description": f"Which chat: {DIALOG_ID_FORM}.",
            "pattern": "^(chat)?[1-9][0-9]{0,10}$",
            "maxLength": 20,
            "examples": ["chat5", "123"],
        }
    ),
]
BotIdArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 1,
            "maximum": 2**31 - 1,
            "description": "The bot's id, e.g. 456. Optional: defaults to B24_BOT_ID.",
        }
    ),
]
BotTokenArg = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 40,
            "description": "The token chosen when the bot was registered. Optional: defaults to B24_BOT_TOKEN; "
            "only webhook authorisation needs it.",
        }
    ),
]


def tool_error(err: B24Error | str) -> CallToolResult:
    """The one way an isError result is made: a single text block, secrets masked."""
    return CallToolResult(content=[TextContent(type="text", text=redact(str(err)))], is_error=True)


def summary(chat: dict[str, Any]) -> str:
    """One line a person or a model can read at a glance."""
    kind = "personal chat" if chat.get("messageType") == "P" or chat.get("type") == "private" else "group chat"
    parts = [f"{chat.get('name') or '(no name)'} ({chat['dialogId']}): {kind}"]
    if chat.get("type"):
        parts[0] += f" of type {chat['type']!r}"
    if chat.get("role"):
        parts.append(f"the bot's role: {chat['role']}")
    counts = [
        f"{chat[k]} {name}" for k, name in (("userCounter", "members"), ("messageCount", "messages")) if k in chat
    ]
    if counts:
        parts.append(", ".join(counts))
    if chat.get("owner"):
        parts.append(f"owner: user {chat['owner']}")
    if chat.get("dateCreate"):
        parts.append(f"created {chat['dateCreate']}")
    return "; ".join(parts) + "."


def _progress(ctx: Context | None) -> OnWait | None:
    """Waits (rate limit, back-off) become MCP progress notifications, so hosts can show why a call is slow."""
    if ctx is None:
        return None
    waited = 0.0

    async def report(seconds: float, why: str) -> None:
        nonlocal waited
        waited += seconds
        try:
            await ctx.report_progress(waited, None, why)
        except Exception:  # progress is a courtesy: never let it fail the call
            log.debug("progress notification failed", exc_info=True)

    return report


@dataclass
class Portal:
    """What the tool needs, made on first use: the client (and the httpx import) stay off the start-up path."""

    settings: Settings | ConfigError
    transport: httpx.AsyncBaseTransport | None = None
    _client: B24Client | None = None
    _closers: list[Any] = field(default_factory=list)

    def client(self) -> B24Client:
        if isinstance(self.settings, ConfigError):
            raise ConfigError(f"b24-mcp is not configured: {self.settings} Then restart the MCP server.")
        if self._client is None:
            from .client import B24Client, make_http

            transport = self.transport
            if transport is None and self.settings.demo:
                from . import demo

                transport = demo.transport()
            http = make_http(self.settings, transport)
            self._closers.append(http.aclose)
            oauth = None
            if self.settings.mode == "oauth":
                from .oauth import session_for

                oauth = session_for(self.settings, http)
            self._client = B24Client(self.settings, http, oauth)
        return self._client

    async def aclose(self) -> None:
        # Forget the client too: should a transport run the lifespan again, the next call builds a fresh one.
        closers, self._closers, self._client = self._closers, [], None
        for close in closers:
            await close()


def build_server(settings: Settings | ConfigError, *, transport: httpx.AsyncBaseTransport | None = None) -> MCPServer:
    """The MCP server. `transport` replaces the network in tests (httpx.MockTransport)."""
    portal = Portal(settings, transport)
    if isinstance(settings, Settings):
        redact.add(settings.secrets)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Portal]:
        try:
            yield portal
        finally:
            await portal.aclose()

    async def fetch(dialog_id: object, bot_id: object, bot_token: object, ctx: Context | None) -> dict[str, Any]:
        """Check the arguments, ask the portal; the chat's fields as sent (B24Error on any failure)."""
        dialog = check_dialog_id(dialog_id)
        bot = None if bot_id is None else check_bot_id(bot_id)
        token = None if bot_token is None else check_bot_token(bot_token)
        chat = await portal.client().get_chat(dialog, bot, token, _progress(ctx))
        return chat.model_dump(mode="json", exclude_unset=True)

    async def get_chat(
        dialogId: DialogIdArg = None,
        botId: BotIdArg = None,
        botToken: BotTokenArg = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, Chat]:
        try:
            data = await fetch(dialogId, botId, botToken, ctx)
        except B24Error as err:
            return tool_error(err)
        except Exception:
            log.exception("get_chat failed unexpectedly")
            return tool_error(UNEXPECTED)
        text = summary(data)
        if isinstance(settings, Settings) and settings.demo:
            from .demo import NOTICE

            text = f"{NOTICE}\n{text}"
        return CallToolResult(
            content=[TextContent(type="text", text=text), TextContent(type="text", text=json.dumps(data))],
            structured_content=data,
        )

    async def chat_resource(dialogId: str) -> str:
        # Same chat JSON as the tool's structuredContent. Resources have no isError: failures are protocol
        # errors, with the same masked message (a malformed dialogId is "invalid params").
        try:
            return json.dumps(await fetch(dialogId, None, None, None))
        except InputError as err:
            raise ResourceNotFoundError(redact(str(err))) from None
        except B24Error as err:
            raise ResourceError(redact(str(err))) from None
        except Exception:
            log.exception("reading a chat resource failed unexpectedly")
            raise ResourceError(UNEXPECTED) from None

    tool = Tool.from_function(
        get_chat,
        name="get_chat",
        title="Get Bitrix24 chat",
        description=GET_CHAT_DESCRIPTION,
        annotations=ToolAnnotations(
            title="Get Bitrix24 chat",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=True,
        ),
    )
    # The arguments default to None in Python so that a missing one reaches our own check (which names it
    # without quoting the rest); the published schema still says dialogId is required.
    for prop in tool.parameters["properties"].values():
        prop.pop("default", None)
    tool.parameters["required"] = ["dialogId"]
    tool.parameters["additionalProperties"] = False
    server: MCPServer = MCPServer(
        "b24-mcp",
        title="Bitrix24 chats",
        version=__version__,
        instructions=INSTRUCTIONS,
        tools=[tool],
        lifespan=lifespan,
        log_level="WARNING",  # only used when nothing set logging up before (tests); see logs.setup
    )
    server.resource(
        CHAT_URI,
        name="bitrix24-chat",
        title="Bitrix24 chat",
        description="A Bitrix24 chat as JSON (the same fields get_chat returns), e.g. bitrix24://chat/chat5 for "
        "group chat 5 or bitrix24://chat/123 for the personal chat with user 123. The bot must be in the chat.",
        mime_type="application/json",
    )(chat_resource)
    return server
