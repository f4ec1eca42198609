"""The process's HTTP client and what fails below HTTP: the trust it uses (SSL_CERT_FILE, SSL_CERT_DIR, else
certifi's bundle), the proxies the environment sets, and a failure of either explained by the setting at fault.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from urllib.parse import urlsplit

import httpx

from ..errors import ConfigError, UpstreamError, clean_text
from ..logs import redact


def network_error(host: str, exc: httpx.HTTPError) -> UpstreamError:
    """A failure below HTTP, explained; the message names the host (and the setting at fault), never the URL."""
    reason = clean_text(str(exc), mask=redact) or type(exc).__name__  # it may quote what the server sent
    cause = exc.__context__ or exc.__cause__
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__context__ or cause.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in reason:
        if "hostname mismatch" in reason.lower() or "doesn't match" in reason or "not valid for" in reason:
            return UpstreamError(
                f"The TLS certificate of {host} is for another name (hostname mismatch): use the portal's own "
                "address in B24_WEBHOOK_URL or B24_PORTAL_URL, the one its certificate names."
            )
        hint = (
            "SSL_CERT_FILE points to a CA that did not sign it"
            if os.environ.get("SSL_CERT_FILE")
            else ("for an on-premise portal with an internal CA, set SSL_CERT_FILE to that CA's PEM file")
        )
        return UpstreamError(f"The TLS certificate of {host} could not be verified ({reason}); {hint}.")
    proxy = proxy_for(host)
    if proxy is not None and isinstance(exc, (httpx.ProxyError, httpx.ConnectError, httpx.ConnectTimeout)):
        return UpstreamError(
            f"Could not reach Bitrix24 at {host} through the proxy {proxy} (set by HTTPS_PROXY/ALL_PROXY): "
            f"{reason}. Fix or unset the proxy variable, or add the host to NO_PROXY.",
            retryable=True,
            sent=False,
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError(f"Could not connect to {host} ({reason}); check the address.", retryable=True, sent=False)
    if isinstance(exc, httpx.TimeoutException):
        unsent = isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        return UpstreamError(f"{host} timed out ({reason}).", retryable=True, sent=not unsent)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) and _scheme(exc) == "http":
        # Allowed on loopback only; a portal speaking TLS drops a plain request, which read as a flaky network.
        return UpstreamError(
            f"{host} broke off the answer to a plain http:// request ({reason}), as a portal that speaks only "
            "HTTPS does: use https:// in B24_WEBHOOK_URL or B24_PORTAL_URL.",
            retryable=True,
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        return UpstreamError(f"{host} broke off the answer ({reason}); try again.", retryable=True)
    return UpstreamError(f"The connection to {host} failed ({reason}); try again.", retryable=True)


def _scheme(exc: httpx.HTTPError) -> str | None:
    try:
        return exc.request.url.scheme
    except RuntimeError:  # an error raised without its request
        return None


def proxy_for(host: str) -> str | None:
    """The proxy's host:port that httpx uses for https://host (from the environment), or None."""
    hostname = host.rsplit(":", 1)[0].strip("[]")
    if urllib.request.proxy_bypass(hostname):
        return None
    proxy = urllib.request.getproxies().get("https") or urllib.request.getproxies().get("all")
    return _proxy_address(proxy) if proxy else None


def _proxy_address(proxy: str) -> str:
    """host:port of a proxy setting, as httpx reads it (no scheme means http://), never its user:password."""
    try:
        netloc = urlsplit(proxy if "://" in proxy else f"http://{proxy}").netloc
    except ValueError:  # "http://[oops": shown as set, since that is what has to be fixed
        netloc = proxy.split("://", 1)[-1]
    return clean_text(netloc.rsplit("@", 1)[-1], 100)


def _proxy_setting_error() -> ConfigError | None:
    """A proxy variable httpx refuses to use (SOCKS without socksio, an unknown scheme), named; or None."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        value = os.environ.get(name, "").strip()
        scheme = value.split("://", 1)[0].lower() if "://" in value else "http"
        if value and scheme not in ("http", "https"):
            why = "SOCKS proxies need the optional socksio package" if scheme.startswith("socks") else "unknown scheme"
            return ConfigError(
                f"{name} is set to a {clean_text(scheme, 20)}:// proxy ({_proxy_address(value)}), which b24-mcp "
                f"cannot use ({why}): set it to an http:// proxy, or unset it."
            )
    return None


def trust() -> ssl.SSLContext:
    """The TLS context for the trust the environment asks for: SSL_CERT_FILE (an on-premise CA), else SSL_CERT_DIR,
    else certifi's bundle, in httpx's own order. Reading a bundle costs ~20 ms, so it is read once per process
    per setting (and again if the file changes), not once per client: `check` makes several."""
    cafile, capath = os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", "")
    stamp = None
    if cafile:
        try:
            stat = os.stat(cafile)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass  # the load below names the setting
    return _context(cafile, "" if cafile else capath, stamp)


@functools.lru_cache(maxsize=8)
def _context(cafile: str, capath: str, stamp: object) -> ssl.SSLContext:
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    if capath:
        return ssl.create_default_context(capath=capath)
    import certifi  # httpx's own default, and a dependency of it

    return ssl.create_default_context(cafile=certifi.where())


def make_http(timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The process's one HTTP client, trusting what `trust()` reads."""
    try:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            verify=trust(),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "b24-mcp"},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            follow_redirects=False,
        )
    except (ImportError, ValueError):
        # httpx mounts every proxy from the environment here, whatever host it will be used for.
        err = _proxy_setting_error()
        if err is None:
            raise
        raise err from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"SSL_CERT_FILE={os.environ.get('SSL_CERT_FILE', '')!r} (or SSL_CERT_DIR) could not be loaded as a "
            f"CA bundle ({type(exc).__name__}): point it to a readable PEM file, or unset it."
        ) from None
