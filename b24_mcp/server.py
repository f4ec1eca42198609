"""The MCP server: the tools and resources of `tools/` on an `MCPServer`, and the connection they share.

The connection (HTTP client, auth, Bitrix24 client) is made on first use and warmed after the first tools/list,
and output schemas are served from the committed contract (`contract.json`), not generated from the models:
hosts launch every configured server at once, so start-up time is felt.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server import CacheHint
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.resources import DEFAULT_RESOURCE_SECURITY
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.uri_template import UriTemplate
from mcp_types import (
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    InputRequiredResult,
    PromptReference,
    ResourceTemplateReference,
)
from mcp_types import Resource as MCPResource
from mcp_types import ResourceTemplate as MCPResourceTemplate
from mcp_types import Tool as MCPTool

from .app import mask_secrets
from .chat_resources import KnownChats
from .contract import instructions, published_contract, spec_of, spec_of_template
from .errors import B24Error, ConfigError, InputError
from .logs import redact
from .settings import DEMO_NOTICE, RESULT_BUDGET, Settings
from .tools.identity import ICONS

if TYPE_CHECKING:
    import httpx
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.auth.settings import AuthSettings

    from .bitrix24.client import B24Client
    from .journal.inbox import Inbox

log = logging.getLogger("b24_mcp.server")

try:
    __version__ = version("b24-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

COMPLETIONS_MAX = 100  # completion/complete returns at most 100 values
LIST_TTL_MS = 24 * 3600 * 1000  # tools and templates change only with a new version of the server
READ_TTL_MS = 10 * 1000  # a chat gets new messages: a read is fresh for seconds, and only for this caller
CACHE_HINTS: dict[Any, CacheHint] = {
    "tools/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "resources/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "resources/templates/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "prompts/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "server/discover": CacheHint(ttl_ms=LIST_TTL_MS, scope="public"),
    "resources/read": CacheHint(ttl_ms=READ_TTL_MS, scope="private"),
}


class RecentDialogs:
    """The dialogIds calls have answered for, most recent first, at most `COMPLETIONS_MAX`: what completions offer."""

    def __init__(self, seed: list[str]) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict((d, None) for d in reversed(seed[:COMPLETIONS_MAX]))

    def answered(self, dialog_id: str) -> None:
        self._ids[dialog_id] = None
        self._ids.move_to_end(dialog_id)
        while len(self._ids) > COMPLETIONS_MAX:
            self._ids.popitem(last=False)

    def matching(self, typed: str) -> list[str]:
        """Most recent first; those starting with what was typed, then those containing it ("12" finds chat12)."""
        typed = typed.strip().lower()
        recent = list(reversed(self._ids))
        first = [d for d in recent if d.lower().startswith(typed)]
        return first + [d for d in recent if typed in d.lower() and d not in first]


class Connection:
    """What the tools need, made on first use: the client (and the httpx import) stay off the start-up path."""

    def __init__(self, settings: Settings | ConfigError, transport: httpx.AsyncBaseTransport | None) -> None:
        self.settings = settings
        self.transport = transport
        self._client: B24Client | None = None
        self._http: httpx.AsyncClient | None = None
        self.listed: anyio.Event | None = None  # set by the first tools/list; made inside the event loop
        seed: list[str] = []
        if isinstance(settings, Settings) and settings.demo:
            from .standin_data import CHATS

            seed = list(CHATS)
        self.recent = RecentDialogs(seed)
        self._inbox: Inbox | None = None
        self.known: KnownChats | None = None  # the journal's chats as resources, and their events

    def inbox(self) -> Inbox | None:
        """The journal (B24_JOURNAL=on, or the demo's), made with the client on first use; None when it is off."""
        if not isinstance(self.settings, Settings) or self.settings.journal is None:
            return None
        if self._inbox is None:
            from .app import make_inbox

            self._inbox = make_inbox(self.settings, self.client, self.known.journaled if self.known else None)
        return self._inbox

    def client(self) -> B24Client:
        if isinstance(self.settings, ConfigError):
            said = str(self.settings).rstrip()
            said += "" if said.endswith((".", "!", "?")) else "."
            raise ConfigError(f"b24-mcp is not configured: {said} Then restart the MCP server.")
        if self._client is None:
            from .app import make_client
            from .bitrix24.network import make_http

            transport = self.transport
            if transport is None and self.settings.demo:
                from . import demo

                transport = demo.transport()
            http = make_http(self.settings.timeout, transport)
            self._http = http
            self._client = make_client(self.settings, http)
        return self._client

    async def warm(self) -> None:
        """Build the client, its parsers and (on a real network) its connection ahead of the first call; a
        failure here is reported by that call instead."""
        try:
            connect = self.transport is None and not getattr(self.settings, "demo", True)
            from .tools.registry import ready

            settings = self.settings
            served = settings.tools if isinstance(settings, Settings) else None
            journal = isinstance(settings, Settings) and settings.journal is not None
            await self.client().warm(connect, ready(served, journal))
        except Exception:
            log.debug("warming the connection failed; the first call will say why", exc_info=True)

    async def aclose(self) -> None:
        # Forget the client too: should a transport run the lifespan again, the next call builds a fresh one.
        http, self._http, self._client = self._http, None, None
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            await inbox.aclose()
        if http is not None:
            oauth = sys.modules.get("b24_mcp.bitrix24.oauth")  # loaded only if an OAuth session was made
            if oauth is not None:
                await oauth.RENEWALS.settle()  # a rotated pair on its way is saved before its client closes
            await http.aclose()


ToolCall = Callable[[dict[str, Any], Context | None], Awaitable[CallToolResult]]


class B24Server(MCPServer):
    """MCPServer whose tools take their arguments as sent (the SDK's own validation would quote a bad value, a bot
    token say, and drop unknown arguments; `tools.arguments` does both jobs instead): `list_tools` and `call_tool`,
    the SDK's public methods behind tools/list and tools/call, serve the `ToolSpec`s, and the resource methods the
    templates (the SDK's decorator builds a pydantic model a template: ~5 ms each at every start). The first
    tools/list tells the connection it may warm up."""

    connection: Connection | None = None
    calls: dict[str, ToolCall]
    listing: list[MCPTool]
    templates: list[tuple[MCPResourceTemplate, UriTemplate, Callable[[str], Awaitable[str]]]]

    async def list_tools(self) -> list[MCPTool]:
        if self.connection is not None and self.connection.listed is not None:
            self.connection.listed.set()
        return self.listing

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult:
        call = self.calls.get(name)
        if call is None:
            raise ToolError(f"Unknown tool: {name}; the tools are {', '.join(self.calls)}.")
        return await call(arguments, context)

    async def list_resources(self) -> list[MCPResource]:
        resources = await super().list_resources()
        if self.connection is not None and self.connection.known is not None:
            resources += self.connection.known.listed()  # the chats the journal knows
        return resources

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        return [template for template, _, _ in self.templates]

    async def read_resource(
        self, uri: Any, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        said = str(uri)
        for _, parsed, read in self.templates:
            params = parsed.match(said)
            if params is None:
                continue
            if DEFAULT_RESOURCE_SECURITY.validate(params) is not None:  # the SDK's own policy for template values
                raise ResourceNotFoundError(f"Unknown resource: {said}")
            (value,) = params.values()
            return [ReadResourceContents(content=await read(str(value)), mime_type="application/json")]
        raise ResourceNotFoundError(f"Unknown resource: {said}")


def build_server(
    settings: Settings | ConfigError,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    auth: AuthSettings | None = None,
    token_verifier: TokenVerifier | None = None,
) -> MCPServer:
    """The MCP server. `transport` replaces the network in tests (httpx.MockTransport); `auth` and
    `token_verifier` require a bearer token on Streamable HTTP (`transport.server_auth`)."""
    connection = Connection(settings, transport)
    bus = InMemorySubscriptionBus()  # subscriptions/listen: the journal announces its chats' changes on it
    connection.known = KnownChats(bus, connection.inbox)
    if isinstance(settings, Settings):
        mask_secrets(settings)
    notice = None
    if isinstance(settings, Settings) and settings.demo:
        notice = DEMO_NOTICE  # from settings: importing demo.py would bring httpx onto the start-up path

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Connection]:
        connection.listed = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_warm_when_listed, connection)
            tg.start_soon(_poll_when_listed, connection)
            try:
                yield connection
            finally:
                tg.cancel_scope.cancel()
                await connection.aclose()

    budget = settings.result_budget if isinstance(settings, Settings) else RESULT_BUDGET
    chosen = settings.tools if isinstance(settings, Settings) else None
    contract = published_contract()  # what tools/list says, committed: the tools themselves load after it
    served_summaries = {t["name"]: t["summary"] for t in contract["summaries"] if chosen is None or t["name"] in chosen}

    def bind(name: str) -> ToolCall:
        async def call(raw: dict[str, Any], ctx: Context | None) -> CallToolResult:
            from .tools.spec import handle  # how a call runs loads with the tools, after the first tools/list

            return await handle(
                spec_of(name), connection.client, raw, ctx, notice, connection.recent.answered, budget, connection.inbox
            )

        return call

    server = B24Server(
        "b24-mcp",
        title="Bitrix24 chats",
        version=__version__,
        instructions=instructions(served_summaries),
        icons=ICONS,
        lifespan=lifespan,
        cache_hints=_hints(settings),
        subscriptions=bus,
        auth=auth,
        token_verifier=token_verifier,
        log_level="WARNING",  # only used when nothing set logging up before (tests); see logs.setup
    )
    server.connection = connection
    shown = [tool for tool in contract["tools"] if chosen is None or tool["name"] in chosen]
    server.calls = {tool["name"]: bind(tool["name"]) for tool in shown}
    server.listing = [MCPTool.model_validate(tool) for tool in shown]

    def reader(uri_template: str) -> Callable[[str], Awaitable[str]]:
        async def read_value(value: str) -> str:
            # The same JSON as the tool's structuredContent, its notice first (the demo's marker, the untrusted-text
            # warning). Resources have no isError: failures are protocol errors with the same masked message (a bad
            # dialogId is "not found").
            from .tools.spec import UNEXPECTED, fetch, fitted

            spec = spec_of_template(uri_template)
            assert spec.resource is not None
            try:
                raw = {spec.resource.param: value}
                model, values = await fetch(spec, connection.client, raw, None, connection.recent.answered)
                return json.dumps(fitted(spec, model, values, notice, budget).structured_content, ensure_ascii=False)
            except InputError as err:
                raise ResourceNotFoundError(redact(str(err))) from None
            except B24Error as err:
                raise ResourceError(redact(str(err))) from None
            except Exception:
                log.exception("reading a %s resource failed unexpectedly", spec.name)
                raise ResourceError(UNEXPECTED) from None

        return read_value

    owner = contract["templateTools"]  # each template's tool: B24_TOOLS leaves out the templates of those it leaves out
    templates = [t for t in contract["resourceTemplates"] if chosen is None or owner[t["uriTemplate"]] in chosen]
    server.templates = [
        (MCPResourceTemplate.model_validate(t), UriTemplate.parse(t["uriTemplate"]), reader(t["uriTemplate"]))
        for t in templates
    ]
    completed = {template["uriTemplate"] for template in templates if "{dialogId}" in template["uriTemplate"]}

    async def complete(
        ref: ResourceTemplateReference | PromptReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if not (isinstance(ref, ResourceTemplateReference) and ref.uri in completed and argument.name == "dialogId"):
            return None
        found = connection.recent.matching(argument.value)
        return Completion(values=found[:COMPLETIONS_MAX], total=len(found), has_more=len(found) > COMPLETIONS_MAX)

    server.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK's decorator is unannotated
    return server


async def _warm_when_listed(connection: Connection) -> None:
    """After the first tools/list: import the client's modules in a thread, then build it (the TLS context)."""
    assert connection.listed is not None
    await connection.listed.wait()
    await anyio.sleep(0.01)  # let the tools/list answer go out first
    await anyio.to_thread.run_sync(_import_client_modules)
    await connection.warm()


def _hints(settings: Settings | ConfigError) -> dict[Any, CacheHint]:
    """With the journal, resources/list names its chats: a private list that changes, not a public one."""
    if isinstance(settings, Settings) and settings.journal is not None:
        return {**CACHE_HINTS, "resources/list": CacheHint(ttl_ms=READ_TTL_MS, scope="private")}
    return CACHE_HINTS


async def _poll_when_listed(connection: Connection) -> None:
    """With B24_JOURNAL=on (not the demo's, which nothing writes to): the journal's background poll."""
    settings = connection.settings
    if not isinstance(settings, Settings) or settings.journal is None or settings.demo:
        return
    assert connection.listed is not None
    await connection.listed.wait()
    inbox = connection.inbox()
    if inbox is not None:
        await inbox.poller.run()


def _import_client_modules() -> None:
    from .bitrix24 import auth, client, network, wire  # noqa: F401 - imported for their side effect: loaded once, off the loop
    from .tools import registry  # noqa: F401 - the tools and their models, which tools/list did not need
