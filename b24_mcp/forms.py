"""How a URL setting is checked, for the desktop's settings and the team's alike: https unless it is loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import ConfigError


def is_loopback(host: str) -> bool:
    """Loopback hosts may use plain http: they are local stand-ins, nothing crosses a network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(var: str, raw: str, form: str, *, query: bool = False) -> tuple[str, str, str]:
    """Common checks for a URL setting: scheme, host, https unless loopback, no credentials or fragment (and no
    query unless `query`). Returns (scheme, netloc, path)."""
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ConfigError(f"{var} is not a valid URL; expected {form}") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(f"{var} must be an absolute http(s) URL; expected {form}")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise ConfigError(
            f"{var} must use https:// (Bitrix24 refuses plain http); plain http is allowed only for "
            f"localhost/127.0.0.1 stand-ins; expected {form}"
        )
    if (parts.query and not query) or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{var} must not contain a query string, fragment or user:password; expected {form}")
    return parts.scheme, parts.netloc, parts.path
