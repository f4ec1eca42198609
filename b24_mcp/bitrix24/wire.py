"""One HTTP exchange with a Bitrix24 portal or OAuth server, bounded in size, and its failures explained.

An answer is read as a stream and stops at `MAX_ANSWER_BYTES` after decompression, so a hostile or broken
upstream costs a few MiB and ends in a clear error. Redirects are never followed: a POST carrying a webhook code
or a token must not be replayed to another host. Errors name the host and the likely cause, never the URL.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ..errors import AnswerError, UpstreamError, clean_text
from ..forms import is_loopback
from .network import network_error

# A window of 50 + 50 messages of 20,000 characters, JSON-escaped, stays well below this; anything larger is not
# an answer b24-mcp asked for.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# Parsed JSON costs ~64 bytes a value whatever its size on the wire: 8 MiB of "[]," would be ~2.8 million lists
# (~170 MiB). A window of 50 + 50 messages holds ~10,000 values; this bounds a parse to ~20 MiB.
MAX_JSON_VALUES = 300_000
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
ACCEPT_ENCODING = "gzip, deflate"  # what we can inflate with a bound; br/zstd are not asked for
PLAIN = ("identity", "")  # Content-Encodings whose bytes are the body as is
READABLE = (*PLAIN, "gzip", "x-gzip", "deflate")  # what `_Inflater` undoes, x-gzip being gzip's old name


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    location: str | None = None  # where a 3xx answer pointed


class _Inflater:
    """Incremental, bounded decompression of one Content-Encoding: ours, since httpx's inflates each compressed
    chunk whole before we see a byte of it, and a gzip bomb's chunk alone would pass any bound."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._gzip = encoding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._first = True

    def feed(self, data: bytes, room: int) -> bytes:
        """At most `room + 1` bytes of output (one more than fits tells the caller it overflowed)."""
        out = bytearray()
        while data and len(out) <= room:
            if self._d.eof:
                if not self._gzip:
                    break  # bytes after the end of a zlib stream: not part of the answer
                # gzip may come as several members, one after the other (RFC 1952): each is part of the answer.
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out += self._d.decompress(data, room + 1 - len(out))
            except zlib.error:
                if not (self._first and self.encoding == "deflate"):
                    raise
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)  # some servers send raw deflate
                out += self._d.decompress(data, room + 1 - len(out))
            self._first = False
            data = self._d.unconsumed_tail or (self._d.unused_data if self._d.eof else b"")
        return bytes(out)


async def exchange(
    http: httpx.AsyncClient,
    url: str,
    *,
    host: str,
    json: Any = None,
    data: dict[str, str] | None = None,
    limit: int = MAX_ANSWER_BYTES,
    timeout: float | None = None,
) -> Reply:
    """POST and read the answer, at most `limit` bytes once decompressed (each phase within `timeout` seconds, if
    given, else the client's). Raises UpstreamError/ConfigError."""
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    phases = httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout)
    try:
        async with http.stream("POST", url, json=json, data=data, headers=headers, timeout=phases) as response:
            if response.is_redirect:
                return Reply(response.status_code, b"", response.headers.get("location", ""))
            encoding = _encoding(response)
            if encoding not in READABLE:
                raise AnswerError(
                    f"{host} answered HTTP {response.status_code} in an encoding b24-mcp did not ask for "
                    f"({encoding[:20]!r}); a proxy may be rewriting answers.",
                    status=response.status_code,
                )
            body = await _bounded_body(response, encoding, limit)
            if body is None:
                raise AnswerError(
                    f"{host} sent an answer larger than {_size(limit)} (HTTP "
                    f"{response.status_code}); b24-mcp stopped reading it. No Bitrix24 answer is that large: "
                    "a proxy or the portal is misbehaving.",
                    status=response.status_code,
                )
            return Reply(response.status_code, body)
    except zlib.error:
        raise UpstreamError(f"{host} sent a compressed answer that is corrupt; try again.", retryable=True) from None
    except httpx.HTTPError as exc:
        raise network_error(host, exc) from None


async def _bounded_body(response: httpx.Response, encoding: str, limit: int) -> bytes | None:
    """The body, decompressed, or None as soon as it passes `limit` bytes (the rest is never read)."""
    inflater = _Inflater(encoding) if encoding not in PLAIN and not _in_memory(response) else None
    body = bytearray()
    async for chunk in _raw(response):
        body += inflater.feed(chunk, limit - len(body)) if inflater else chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as sent (still compressed); a response built in memory (a mock transport) is one chunk."""
    if _in_memory(response):
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def _in_memory(response: httpx.Response) -> bool:
    """A response made in memory (a mock transport) holds its body whole, already decoded by httpx."""
    return response.is_stream_consumed and hasattr(response, "_content")


def _encoding(response: httpx.Response) -> str:
    """The answer's Content-Encoding, as `READABLE` spells it ("identity" when none is named)."""
    return str(response.headers.get("content-encoding", "identity")).strip().lower()


MAX_REDIRECTS = 3  # file storage may send a download on once or twice; more is a loop or a misconfiguration


@dataclass(frozen=True)
class Download:
    """A file as a download link served it: its bytes (None when over the limit) and what its headers said."""

    body: bytes | None
    content_type: str  # the Content-Type header, "" if none
    disposition: str  # the Content-Disposition header (the file's name), "" if none
    length: int | None  # bytes read, or the Content-Length the server declared when the body was not read
    host: str  # the host that served it (after redirects)
    redirects: int


async def download(http: httpx.AsyncClient, url: str, *, limit: int, redirects: int = MAX_REDIRECTS) -> Download:
    """GET a one-time download link, with nothing of the portal's credentials: no cookie from the client's jar
    and (the client has none) no auth header; the link itself carries its token. Redirects are followed to
    https only, at most `redirects` times, never back to an address already visited. At most `limit` bytes
    are read, after decompression. Errors name the host, never the URL (its query is the token)."""
    visited: set[str] = set()
    for hop in range(redirects + 1):
        host, scheme = _where(url)
        if scheme != "https" and not (hop == 0 and scheme == "http" and is_loopback(host.rsplit(":", 1)[0])):
            raise UpstreamError(f"The download link points to {scheme}://{host}, not https; b24-mcp does not fetch it.")
        visited.add(url)
        request = http.build_request("GET", url, headers={"Accept-Encoding": ACCEPT_ENCODING, "Accept": "*/*"})
        request.headers.pop("cookie", None)  # the portal's session cookies, if it ever set any, stay home
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise network_error(host, exc) from None
        try:
            status = response.status_code
            if response.is_redirect:
                target = _follow(url, response.headers.get("location", ""), host, status)
                if target in visited:
                    raise UpstreamError(f"{host} answered the download with a redirect loop; nothing to show.")
                if hop == redirects:
                    raise UpstreamError(
                        f"The download was redirected more than {redirects} times (last by {host}); b24-mcp stopped."
                    )
                url = target
                continue
            if not 200 <= status < 300:
                raise UpstreamError(
                    f"{host} answered the download with HTTP {status}: the one-time link may have expired or been "
                    "used already. Call get_file again for a new one.",
                    status=status,
                    retryable=status >= 500,
                )
            encoding = _encoding(response)
            if encoding not in READABLE:
                raise AnswerError(f"{host} sent the file in an encoding b24-mcp did not ask for ({encoding[:20]!r}).")
            declared = _declared_length(response.headers.get("content-length"))
            kind = response.headers.get("content-type", "")
            disposition = response.headers.get("content-disposition", "")
            if declared is not None and declared > limit and encoding in PLAIN:
                return Download(None, kind, disposition, declared, host, hop)  # too large, and said so: not read
            body = await _bounded_body(response, encoding, limit)
            return Download(body, kind, disposition, declared if body is None else len(body), host, hop)
        except zlib.error:
            raise UpstreamError(f"{host} sent a compressed file that is corrupt; try again.", retryable=True) from None
        except httpx.HTTPError as exc:
            raise network_error(host, exc) from None
        finally:
            await response.aclose()
    raise AssertionError("unreachable: the loop returns or raises")


def _where(url: str) -> tuple[str, str]:
    """(host[:port], scheme) of a URL, without its user:password, path or query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UpstreamError("The download link is not a valid URL; b24-mcp does not fetch it.") from None
    return clean_text(parts.netloc.rsplit("@", 1)[-1], 100) or "an unnamed host", parts.scheme.lower()


def _follow(url: str, location: str, host: str, status: int) -> str:
    """Where a download's redirect points, if b24-mcp may go there: https only."""
    try:
        target = urljoin(url, location.strip())
    except ValueError:
        target = ""
    if not location.strip() or not target:
        raise UpstreamError(f"{host} answered the download with HTTP {status}, a redirect to nowhere; nothing to show.")
    where, scheme = _where(target)
    if scheme != "https":
        raise UpstreamError(
            f"{host} answered the download with HTTP {status}, a redirect to {clean_text(scheme, 20)}://{where}, "
            "which b24-mcp does not follow: downloads go to https addresses only.",
            status=status,
        )
    return target


def _declared_length(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() and len(value.strip()) < 19 else None


def redirect_error(host: str, status: int, location: str, setting: str) -> UpstreamError:
    """A 3xx from the portal: never followed, since the request carries a secret; say where it pointed."""
    try:
        target = urlsplit(location)
    except ValueError:  # e.g. "http://[not-an-ip/": still a redirect, to nowhere b24-mcp could name
        where = "an address that is not a valid URL"
    else:
        netloc = target.netloc.rsplit("@", 1)[-1]  # never a user:password that came with it
        where = clean_text(f"{target.scheme}://{netloc}", 100) if netloc else "another path on the same host"
    return UpstreamError(
        f"{host} answered HTTP {status}, a redirect to {where}, which b24-mcp does not follow (the request "
        f"carries a secret). If the portal moved, put its new address in {setting}.",
        status=status,
    )


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


def too_many_values(body: bytes, limit: int = MAX_JSON_VALUES) -> bool:
    """Whether a JSON body holds more than `limit` values (commas and openings outside strings).

    Counting the raw bytes is ~1 ms for 8 MiB and never undercounts; only a body over the limit by that count
    is counted again without its strings (exact, slower), so commas in message texts refuse nothing."""
    if body.count(b",") + body.count(b"[") + body.count(b"{") <= limit:
        return False
    structure = _STRING.sub(b"", body)
    return structure.count(b",") + structure.count(b"[") + structure.count(b"{") > limit
