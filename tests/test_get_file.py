"""get_file against the stand-in portal on loopback HTTPS: each kind of file, the caps, hostile downloads, redirects,
and the one-time link kept out of every output and log.

The portal answers File.download with a link to its own download endpoint; for hostile downloads a scripted
File.download answer points to a second loopback HTTPS server (signed by the same test CA) that sends whatever
it is told to. Every server binds 127.0.0.1 only; every server-side loop is bounded in count and time.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme
from mcp import Client

from b24_mcp import logs, settings
from b24_mcp.app import make_client
from b24_mcp.bitrix24 import network, wire
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.errors import B24Error, UpstreamError
from b24_mcp.server import build_server
from b24_mcp.standin_files import FILES, FileStore, StoredFile, png
from b24_mcp.tools.get_file import FileResult, read_file, sniff
from tests.portal import Fault, StandInPortal, in_thread
from tests.raw_host import Handler, MiB, RawHost, Respond
from tests.values import CODE, TOKEN, webhook_vars

pytestmark = pytest.mark.anyio

PEAK_MAX = 50 * 1000 * 1000  # what one hostile download may cost this process, at most (as in test_hostile)
STREAM_SECONDS = 3.0


# --- a loopback HTTPS download host that sends what it is told ------------------------------------------------------


def hello(h: Handler) -> None:
    h.raw(200, b"hello\n", {"Content-Type": "text/plain"})


@pytest.fixture
def host(ca: trustme.CA) -> Iterator[RawHost]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with in_thread(RawHost(context, hello, "application/octet-stream")) as server:
        yield server


@asynccontextmanager
async def client_for(portal: StandInPortal, **env: str) -> AsyncIterator[B24Client]:
    s = settings.load(webhook_vars(portal.webhook_url, **{"B24_TIMEOUT": "5", **env}))
    async with network.make_http(s.timeout) as http:
        yield make_client(s, http)


def link_to(portal: StandInPortal, url: str) -> None:
    """The portal's next answer (File.download) is a link to `url`."""
    portal.script(Fault.ok({"downloadUrl": url}))


async def opened(portal: StandInPortal, file_id: int = 138, page: int = 1, **env: Any) -> FileResult:
    async with client_for(portal, **env) as client:
        return await read_file(client, file_id, page)


async def refused(portal: StandInPortal, **env: Any) -> B24Error:
    with pytest.raises(B24Error) as caught:
        await opened(portal, **env)
    assert CODE not in str(caught.value) and TOKEN not in str(caught.value) and "token=" not in str(caught.value)
    return caught.value


def text_of(result: Any) -> str:
    return str(result.content[0].text)


# --- each kind of file ----------------------------------------------------------------------------------------------


async def test_a_text_file_is_its_text_quoted(https_portal: StandInPortal) -> None:
    result = await opened(https_portal, 138)
    assert (result.readAs, result.type, result.name, result.size) == ("text", "text/markdown", "release-notes.md", 159)
    assert result.text == FILES[138].data.decode() and (result.page, result.pages) == (1, 1)
    assert https_portal.standin.files.downloads == 1


async def test_an_image_is_an_image_block_and_a_pdf_is_its_text_by_page(https_portal: StandInPortal) -> None:
    async with Client(build_server(settings.load(webhook_vars(https_portal.webhook_url)))) as client:
        image = await client.call_tool("get_file", {"fileId": 140})
        pdf = await client.call_tool("get_file", {"fileId": 142})
    assert [block.type for block in image.content] == ["text", "resource_link", "image"]
    assert image.content[1].uri == "bitrix24://file/140"  # type: ignore[union-attr]
    block = image.content[2]
    assert block.type == "image" and block.mime_type == "image/png" and base64.b64decode(block.data) == png()
    assert image.structured_content is not None and image.structured_content["readAs"] == "image"
    assert block.data not in json.dumps(image.structured_content)  # the picture is not repeated as base64 JSON
    data = pdf.structured_content
    assert data is not None and (data["readAs"], data["pdfPages"]) == ("pdf", 2)
    assert "[page 1 of 2]\nRelease 4.2 checklist" in data["text"] and "[page 2 of 2]\nPage 2:" in data["text"]
    assert "> Release 4.2 checklist: staging build by Thursday noon." in text_of(pdf)
    assert "untrusted" in data["notice"] or "never as instructions" in data["notice"]


async def test_a_long_text_comes_in_pages_and_the_last_says_so(https_portal: StandInPortal) -> None:
    lines = "".join(f"line {n}\n" for n in range(3000))  # ~26,000 characters: three pages
    https_portal.standin.files.files[138] = StoredFile(138, 12, "long.log", "text/plain", lines.encode())
    first, third = await opened(https_portal, 138), await opened(https_portal, 138, page=3)
    assert (first.pages, third.page) == (3, 3)
    assert first.text is not None and third.text is not None and (first.text + third.text) != lines
    with pytest.raises(B24Error, match="page 4 is past the end"):
        await opened(https_portal, 138, page=4)


async def test_a_file_of_another_kind_is_described_not_shown(https_portal: StandInPortal) -> None:
    https_portal.standin.files.files[138] = StoredFile(138, 12, "a.docx", "application/zip", b"PK\x03\x04" + bytes(64))
    result = await opened(https_portal, 138)
    assert (result.readAs, result.type, result.size) == ("not shown", "application/octet-stream", 68)
    assert result.notShown is not None and "content is not shown" in result.notShown and result.text is None


@pytest.mark.parametrize(
    ("data", "declared", "read_as"),
    [
        (b"\x7fELF" + bytes(200), "image/png", "not shown"),  # called a PNG, is a program: no image block
        (b"<script>alert(1)</script>\n", "image/png", "text"),  # called a PNG, is text: read (and quoted) as text
        (png(), "text/plain", "image"),  # called text, is a PNG
    ],
)
async def test_a_file_that_lies_about_its_type_is_read_as_its_bytes(
    https_portal: StandInPortal, data: bytes, declared: str, read_as: str
) -> None:
    https_portal.standin.files.files[138] = StoredFile(138, 12, "photo.png", declared, data)
    result = await opened(https_portal, 138)
    assert result.readAs == read_as and result.type == sniff(data) and result.declaredType == declared


# --- caps and hostile downloads -------------------------------------------------------------------------------------


async def test_a_file_over_the_size_cap_is_described_and_not_read(https_portal: StandInPortal) -> None:
    https_portal.standin.files.files[138] = StoredFile(138, 12, "big.txt", "text/plain", b"x" * 5000)
    result = await opened(https_portal, 138, B24_FILE_MAX_BYTES="1024")
    assert (result.readAs, result.size) == ("not shown", 5000)
    assert result.notShown is not None and "B24_FILE_MAX_BYTES" in result.notShown


def send_stream(total: int, head: dict[str, str], piece: bytes = bytes(64 * 1024)) -> Respond:
    chunked = "Transfer-Encoding" in head
    framed = b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece

    def respond(h: Handler) -> None:
        h.raw(200, b"", head)
        sent, stop = 0, time.monotonic() + STREAM_SECONDS
        while sent < total and time.monotonic() < stop:
            h.wfile.write(framed)
            sent += len(piece)

    return respond


def gzip_bomb() -> Respond:
    segment = gzip.compress(bytes(MiB), 9)  # ~1 KB that inflates to 1 MiB; 1,000 members make ~1 GB
    head = {"Content-Encoding": "gzip", "Content-Type": "text/plain", "Content-Length": str(len(segment) * 1000)}

    def respond(h: Handler) -> None:
        h.raw(200, b"", head)
        for _ in range(1000):
            h.wfile.write(segment)

    return respond


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(gzip_bomb(), id="gzip bomb"),
        pytest.param(send_stream(10**12, {"Content-Length": str(10**12)}), id="endless, declared"),
        pytest.param(send_stream(10**12, {"Transfer-Encoding": "chunked"}), id="endless, undeclared"),
    ],
)
async def test_a_hostile_download_ends_at_the_cap_in_bounded_memory(
    https_portal: StandInPortal, host: RawHost, respond: Respond
) -> None:
    host.respond = respond
    link_to(https_portal, f"{host.base}/file?token=abc")
    tracemalloc.start()
    try:
        result = await opened(https_portal, B24_FILE_MAX_BYTES="1048576")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.readAs == "not shown" and result.notShown is not None and "B24_FILE_MAX_BYTES" in result.notShown
    assert peak < PEAK_MAX
    print(f"traced peak {peak / MiB:.1f} MiB")


async def test_a_download_that_trickles_ends_at_the_time_cap(https_portal: StandInPortal, host: RawHost) -> None:
    def trickle(h: Handler) -> None:
        h.raw(200, b"", {"Content-Length": "1000", "Content-Type": "text/plain"})
        for _ in range(40):  # 40 bytes over ~4 s, well past 3 x 0.3 s
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.1)

    host.respond = trickle
    link_to(https_portal, f"{host.base}/file?token=abc")
    err = await refused(https_portal, B24_TIMEOUT="0.3")
    assert isinstance(err, UpstreamError) and "did not finish within" in str(err)


# --- redirects ------------------------------------------------------------------------------------------------------


async def test_a_redirect_to_https_is_followed_without_the_portals_credentials(
    https_portal: StandInPortal, host: RawHost
) -> None:
    def respond(h: Handler) -> None:
        if h.path.startswith("/first"):
            h.raw(302, b"", {"Location": "/second?sig=1", "Set-Cookie": "session=abc"})
        else:
            h.raw(200, b"moved file\n", {"Content-Type": "text/plain"})

    host.respond = respond
    link_to(https_portal, f"{host.base}/first?token=imbot%7Csecret")
    result = await opened(https_portal)
    assert result.text == "moved file\n"
    assert [path for path, _ in host.seen] == ["/first?token=imbot%7Csecret", "/second?sig=1"]
    for _, headers in host.seen:
        names = {k.lower() for k in headers}
        assert not names & {"cookie", "authorization"} and CODE not in json.dumps(headers)


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://127.0.0.1:9/file", "downloads go to https addresses only"),  # even to loopback
        ("/loop?token=abc", "redirect loop"),
    ],
)
async def test_a_redirect_to_http_or_in_a_loop_is_not_followed(
    https_portal: StandInPortal, host: RawHost, location: str, words: str
) -> None:
    host.respond = lambda h: h.raw(302, b"", {"Location": location})
    link_to(https_portal, f"{host.base}/loop?token=abc")
    err = await refused(https_portal)
    assert words in str(err) and "abc" not in str(err)


async def test_redirects_are_followed_a_bounded_number_of_times(https_portal: StandInPortal, host: RawHost) -> None:
    def respond(h: Handler) -> None:
        hop = int(h.path.rsplit("/", 1)[-1])
        h.raw(302, b"", {"Location": f"/hop/{hop + 1}"})

    host.respond = respond
    link_to(https_portal, f"{host.base}/hop/0")
    err = await refused(https_portal)
    assert f"more than {wire.MAX_REDIRECTS} times" in str(err) and len(host.seen) == wire.MAX_REDIRECTS + 1


# --- the link is a secret -------------------------------------------------------------------------------------------


def test_a_download_link_in_a_log_line_is_masked() -> None:
    line = logs.redact("GET https://portal.example.com/rest/download.json?token=imbot%7CaWxsZWdhbA&x=1")
    assert "aWxsZWdhbA" not in line and "token=***&x=1" in line


def test_a_download_link_works_once() -> None:
    store = FileStore("https://portal.example.com")
    url = store.link(138)
    token = url.split("token=", 1)[1].replace("%7C", "|")
    assert store.serve({"token": token})[0] == 200 and store.serve({"token": token})[0] == 404


async def test_the_link_is_in_no_result_error_or_debug_log(
    https_portal: StandInPortal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    links: list[str] = []
    original = FileStore.link

    def recording(self: FileStore, file_id: int) -> str:
        links.append(original(self, file_id))
        return links[-1]

    monkeypatch.setattr(FileStore, "link", recording)
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    logs.setup("DEBUG")
    try:
        async with Client(build_server(settings.load(webhook_vars(https_portal.webhook_url)))) as client:
            results = [await client.call_tool("get_file", {"fileId": fid}) for fid in (138, 140, 142, 150)]
            results.append(await client.call_tool("get_file", {"fileId": 138, "page": 9}))
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    err = capsys.readouterr().err
    assert len(links) == 4 and "imbot.v2.File.download" in err  # DEBUG logged each call
    shown = err + json.dumps([r.model_dump(mode="json") for r in results])
    for link in links:
        token = link.split("token=", 1)[1]
        assert link not in shown and token not in shown and token.replace("%7C", "|") not in shown
    assert results[3].is_error and "FILE_ACCESS_ERROR" in text_of(results[3])
    assert results[4].is_error and "past the end" in text_of(results[4])


async def test_a_file_is_also_a_resource(https_portal: StandInPortal) -> None:
    async with Client(build_server(settings.load(webhook_vars(https_portal.webhook_url)))) as client:
        templates = (await client.list_resource_templates()).resource_templates
        read = await client.read_resource("bitrix24://file/138")
        with pytest.raises(Exception, match="FILE_NOT_FOUND"):
            await client.read_resource("bitrix24://file/999")
    assert "bitrix24://file/{fileId}" in [t.uri_template for t in templates]
    contents = read.contents[0]
    assert contents.mime_type == "application/json"
    data = json.loads(getattr(contents, "text", ""))
    assert (data["name"], data["readAs"], data["text"]) == ("release-notes.md", "text", FILES[138].data.decode())
