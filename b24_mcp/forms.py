"""How a setting's value (or a tool's id argument) is read: URLs (https unless loopback), ids, secrets, numbers;
and a portal's ISO times.

Each check raises one `ConfigError` line that names the variable and the expected form and never echoes a secret.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from .errors import ConfigError

MAX_ID = 2**31 - 1  # Bitrix24 ids are signed 32-bit integers.
BOT_TOKEN_MAX = 40  # imbot.v2.Bot.register: fields.botToken is at most 40 characters.
_SECRET_LIKE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: tokens and codes

WHOLE_NUMBER_RULE = '789, 789.0 and "789" are read alike'


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


def mask_webhook_url(url: str) -> str:
    """The webhook URL with its secret code replaced, safe for logs and messages."""
    return re.sub(r"(/rest/[0-9]+/)[^/?#\s]+", r"\1***", url)


# --- what is refused before a value is parsed: quotes, and the examples from the README --------------------------


def whole_number(value: object) -> int | None:
    """The one rule for an integer from outside (an argument or a variable): a JSON integer, a number with no
    fraction (JSON Schema's "integer" admits 789.0), or a string of up to 10 digits; None for anything else."""
    if isinstance(value, bool):
        return None  # True is an int in Python, not a number
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value.strip()):
        return int(value.strip())
    return value if isinstance(value, int) else None


def parse_bot_id(value: object, name: str) -> int:
    """A bot id from an argument or a variable: a positive 32-bit integer, by `whole_number`'s rule."""
    number = whole_number(value)
    if number is None or not 1 <= number <= MAX_ID:
        raise _bad_id(name)
    return number


def _bad_id(name: str) -> ConfigError:
    return ConfigError(
        f"{name} must be a positive integer bot id (1 to {MAX_ID}), e.g. 456: the BOT_ID returned by "
        "imbot.v2.Bot.register or listed by imbot.v2.Bot.list"
    )


def check_secret(value: str, name: str, max_len: int | None = None) -> str:
    """Tokens and codes: printable, no spaces. The message never repeats the value."""
    if not value:
        raise ConfigError(f"{name} is empty")
    if not _SECRET_LIKE.match(value):
        raise ConfigError(f"{name} contains spaces or control characters; paste the value exactly as issued")
    if max_len is not None and len(value) > max_len:
        raise ConfigError(f"{name} is {len(value)} characters long; Bitrix24 allows at most {max_len}")
    return value


def number(raw: str, name: str, default: float, low: float, high: float, form: str) -> float:
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; expected {form}") from None
    if not low < value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range; expected {form}")
    return value


WEBHOOK_FORM = "https://your-portal.bitrix24.com/rest/{user_id}/{webhook_code}/"  # {...}: never masked as a code
PORTAL_FORM = "https://your-portal.bitrix24.com"
_EXAMPLES: tuple[tuple[re.Pattern[str], str | None], ...] = (  # (pattern, what to call it; None: the match itself)
    (re.compile(r"://your-portal\.", re.IGNORECASE), "your-portal"),
    (re.compile(r"(?<![A-Za-z0-9])your_(?:webhook_code|bot_token|access_token|refresh_token|client_secret)"), None),
    (re.compile(r"/absolute/path/to/"), "/absolute/path/to/"),
    (re.compile(r"/rest/[0-9]+/abc123xyz/?$"), "abc123xyz"),
    (re.compile(r"^local\.0123456789abcd\.01234567$"), None),
)
_QUOTES = "'\"‘’“”"  # typographic quotes too: they arrive when a value is copied from a chat or a document


def copied_wrong(name: str, value: str, *, secret: bool) -> str | None:
    """A value pasted with its quotes, or an example never replaced: said in one line, without the value."""
    for pattern, called in _EXAMPLES:
        found = pattern.search(value)
        if found:
            return (
                f"{name} still holds an example value ('{called or found.group(0)}') from the README or "
                "claude_config.example.json: replace it with your own"
            )
    wrapped = len(value) >= 2 and value[0] in _QUOTES and value[-1] in _QUOTES
    if wrapped or (not secret and (value[0] in _QUOTES or value[-1] in _QUOTES)):
        return f"{name} is wrapped in quotes, which became part of the value: remove them"
    return None


def parse_tools(raw: str, known: Sequence[str]) -> tuple[str, ...] | None:
    """B24_TOOLS: names from `known` (the registry's, handed in by the command), comma-separated."""
    if not raw:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    unknown = [name for name in names if known and name not in known]
    if not names or unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5]) or "no tool"
        raise ConfigError(
            f"B24_TOOLS names {shown}, which b24-mcp does not have; the tools are {', '.join(known)} "
            "(comma-separated; leave B24_TOOLS unset for all)"
        )
    return names


def stamp(value: str | None) -> float | None:
    """An ISO 8601 time as a Unix time; None when it is not one."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else None
