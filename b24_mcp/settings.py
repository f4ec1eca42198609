"""Configuration: every setting read from the environment, checked once, at start-up.

Shaped so that a bad setting never crashes the host's start-up: `load()` either returns a `Settings` or
raises one `ConfigError` whose single line names the variable, what is wrong and the expected form. The
server keeps that error and returns it from every tool call, so the model can tell the user what to fix.
Hand-written rather than pydantic-settings: the messages are the product here, and they must never echo a
secret (the webhook code, tokens) back.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    from .team import TeamConfig

DEMO_HOST = "demo.b24-mcp.invalid"
DEMO_WEBHOOK_URL = f"https://{DEMO_HOST}/rest/1/demo0webhook0code/"
DEMO_BOT_ID = 456
DEMO_NOTICE = "DEMO DATA from the built-in demo portal (b24-mcp --demo), not a real Bitrix24 account."
DEMO_BOT_TOKEN = "demo-bot-token"  # noqa: S105 - the demo portal's published sample token, not a secret

CALL_BUDGET = 3  # a get_chat call ends within 3 x B24_TIMEOUT, whatever the portal does
MAX_ID = 2**31 - 1  # Bitrix24 ids are signed 32-bit integers.
BOT_TOKEN_MAX = 40  # imbot.v2.Bot.register: fields.botToken is at most 40 characters.

OAUTH_VARS = (
    "B24_PORTAL_URL",
    "B24_ACCESS_TOKEN",
    "B24_REFRESH_TOKEN",
    "B24_CLIENT_ID",
    "B24_CLIENT_SECRET",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_WEBHOOK_PATH = re.compile(r"^/rest/(?P<user>[0-9]+)/(?P<code>[A-Za-z0-9_-]+)/?$")
_SECRET_LIKE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: tokens and codes


@dataclass(frozen=True)
class WebhookConfig:
    """`https://{portal}/rest/{user}/{code}/`: the code in the path is the secret."""

    url: str  # normalised, ends with "/"
    code: str

    def __repr__(self) -> str:  # reprs end up in tracebacks and logs: never show the code
        return f"WebhookConfig(url={self.masked_url!r})"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def masked_url(self) -> str:
        return mask_webhook_url(self.url)


@dataclass(frozen=True)
class OAuthConfig:
    """A Bitrix24 application's tokens; `botToken` is not needed in this mode."""

    portal_url: str  # https://{portal}, no trailing slash
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    oauth_server: str
    token_file: Path | None  # None: the default file in the user's data directory

    @property
    def host(self) -> str:
        return urlsplit(self.portal_url).netloc

    @property
    def origin(self) -> str:
        return self.portal_url

    @property
    def token_url(self) -> str:
        return f"{self.oauth_server}/oauth/token/"


@dataclass(frozen=True)
class Settings:
    auth: WebhookConfig | OAuthConfig
    bot_id: int | None = None
    bot_token: str | None = field(default=None, repr=False)
    timeout: float = 10.0  # one request; a whole call, retries and waits included, ends within CALL_BUDGET x this
    rate_limit: float = 2.0
    rate_burst: int = 10
    demo: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)
    team: TeamConfig | None = None  # B24_REDIS_URL and the HTTP auth variables (team.py)

    @property
    def mode(self) -> Literal["webhook", "oauth"]:
        return "webhook" if isinstance(self.auth, WebhookConfig) else "oauth"

    @property
    def host(self) -> str:
        return self.auth.host


def mask_webhook_url(url: str) -> str:
    """The webhook URL with its secret code replaced, safe for logs and messages."""
    return re.sub(r"(/rest/[0-9]+/)[^/?#\s]+", r"\1***", url)


def is_loopback(host: str) -> bool:
    """Loopback hosts may use plain http: they are local stand-ins, nothing crosses a network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(var: str, raw: str, form: str) -> tuple[str, str, str]:
    """Common checks for a portal URL: scheme, host, https unless loopback. Returns (scheme, netloc, path)."""
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
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{var} must not contain a query string, fragment or user:password; expected {form}")
    return parts.scheme, parts.netloc, parts.path


def parse_webhook_url(raw: str) -> WebhookConfig:
    form = "https://your-portal.bitrix24.com/rest/1/your_webhook_code/"
    var = "B24_WEBHOOK_URL"
    scheme, netloc, path = _check_base_url(var, raw, form)
    match = _WEBHOOK_PATH.match(path)
    if match is None:
        # People paste the URL of a method call ("…/rest/1/code/profile.json"): say so, without the code.
        extra = re.match(r"^/rest/[0-9]+/[^/]+/(.+)$", path)
        hint = f" (remove the trailing '{extra.group(1)}')" if extra else ""
        raise ConfigError(
            f"{var} must be the inbound webhook URL ending right after the webhook code{hint}; "
            f"the path is not /rest/{{user_id}}/{{webhook_code}}/; expected {form}"
        )
    url = f"{scheme}://{netloc}/rest/{match['user']}/{match['code']}/"
    return WebhookConfig(url=url, code=match["code"])


def parse_portal_url(raw: str) -> str:
    form = "https://your-portal.bitrix24.com"
    scheme, netloc, path = _check_base_url("B24_PORTAL_URL", raw, form)
    if path.strip("/") not in ("", "rest"):
        raise ConfigError(f"B24_PORTAL_URL must be the portal's address only, with no path; expected {form}")
    return f"{scheme}://{netloc}"


def parse_oauth_server(raw: str) -> str:
    form = "https://oauth.bitrix.info"
    scheme, netloc, path = _check_base_url("B24_OAUTH_SERVER", raw, form)
    if path.strip("/") not in ("", "oauth/token", "oauth"):
        raise ConfigError(f"B24_OAUTH_SERVER must be the OAuth server's address only; expected {form}")
    return f"{scheme}://{netloc}"


def parse_bot_id(value: object, name: str) -> int:
    """A bot id from an argument or a variable: a positive 32-bit integer (digit strings accepted)."""
    if isinstance(value, bool):
        value = None  # True is an int in Python, not a bot id
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise _bad_id(name)
    return value


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


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, form: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; expected {form}") from None
    if not low < value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range; expected {form}")
    return value


def log_level(env: Mapping[str, str]) -> str:
    """Read separately from `load()`: logging must be set up even when the rest of the configuration is bad."""
    raw = env.get("B24_LOG_LEVEL", "").strip().upper() or "WARNING"
    return raw if raw in LOG_LEVELS else "WARNING"


def load(env: Mapping[str, str], *, demo: bool = False) -> Settings:
    """Read and check every setting; raise one `ConfigError` naming the first bad one."""
    values = {k: v.strip() for k, v in env.items() if k.startswith("B24_")}

    def get(name: str) -> str:
        return values.get(name, "")

    raw_level = get("B24_LOG_LEVEL")
    if raw_level and raw_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"B24_LOG_LEVEL={raw_level!r} is not a log level; expected one of {', '.join(LOG_LEVELS)}")
    timeout = _number(env, "B24_TIMEOUT", 10.0, 0, 60, "seconds one request may take, e.g. 10 (at most 60)")
    rate = _number(env, "B24_RATE_LIMIT", 2.0, 0, 1000, "requests per second, e.g. 2 (Enterprise plans: 5)")
    burst_raw = _number(env, "B24_RATE_BURST", 10, 0, 10_000, "a whole number of requests, e.g. 10 (Enterprise: 250)")
    if burst_raw != int(burst_raw):
        raise ConfigError(f"B24_RATE_BURST={get('B24_RATE_BURST')!r} must be a whole number, e.g. 10")
    auth, bot_id, bot_token, secrets = _auth(get, demo)
    team = None
    if any(name.split("_")[1] in ("REDIS", "HTTP") and value for name, value in values.items()):
        from .team import load as load_team  # only a team deployment (team.TEAM_VARS) imports it

        team = load_team(values)
        if team is not None and team.redis is not None and team.redis.password:
            secrets = (*secrets, team.redis.password)  # masked wherever the URL might be quoted
    return Settings(
        auth=auth,
        bot_id=bot_id,
        bot_token=bot_token,
        timeout=timeout,
        rate_limit=rate,
        rate_burst=int(burst_raw),
        demo=demo,
        secrets=secrets,
        team=team,
    )


def _auth(
    get: Callable[[str], str], demo: bool
) -> tuple[WebhookConfig | OAuthConfig, int | None, str | None, tuple[str, ...]]:
    """Which way to authenticate, decided by which variables are set; and the secrets to keep out of output."""
    if demo:
        return parse_webhook_url(DEMO_WEBHOOK_URL), DEMO_BOT_ID, DEMO_BOT_TOKEN, ()
    bot_id = parse_bot_id(get("B24_BOT_ID"), "B24_BOT_ID") if get("B24_BOT_ID") else None
    raw_token = get("B24_BOT_TOKEN")
    bot_token = check_secret(raw_token, "B24_BOT_TOKEN", BOT_TOKEN_MAX) if raw_token else None
    webhook = get("B24_WEBHOOK_URL")
    oauth_set = [name for name in OAUTH_VARS if get(name)]

    if webhook and oauth_set:
        raise ConfigError(
            f"both B24_WEBHOOK_URL and OAuth settings ({', '.join(oauth_set)}) are set; "
            "choose one way to authenticate and unset the other"
        )
    if webhook:
        auth = parse_webhook_url(webhook)
        return auth, bot_id, bot_token, tuple(s for s in (auth.code, bot_token) if s)
    if oauth_set:
        missing = [name for name in OAUTH_VARS if not get(name)]
        if missing:
            raise ConfigError(
                f"OAuth mode needs {', '.join(OAUTH_VARS)}; missing: {', '.join(missing)} "
                "(or use B24_WEBHOOK_URL instead of OAuth)"
            )
        token_file = get("B24_TOKEN_FILE")
        if token_file and Path(token_file).expanduser().is_dir():
            raise ConfigError(f"B24_TOKEN_FILE={token_file!r} is a directory; expected a file path")
        oauth = OAuthConfig(
            portal_url=parse_portal_url(get("B24_PORTAL_URL")),
            access_token=check_secret(get("B24_ACCESS_TOKEN"), "B24_ACCESS_TOKEN"),
            refresh_token=check_secret(get("B24_REFRESH_TOKEN"), "B24_REFRESH_TOKEN"),
            client_id=check_secret(get("B24_CLIENT_ID"), "B24_CLIENT_ID"),
            client_secret=check_secret(get("B24_CLIENT_SECRET"), "B24_CLIENT_SECRET"),
            oauth_server=parse_oauth_server(get("B24_OAUTH_SERVER") or "https://oauth.bitrix.info"),
            token_file=Path(token_file).expanduser() if token_file else None,
        )
        from .oauth import check_token_path, default_token_file  # only OAuth users import it

        check_token_path(oauth.token_file or default_token_file(oauth.host, oauth.client_id))
        secrets = (oauth.access_token, oauth.refresh_token, oauth.client_secret) + ((bot_token,) if bot_token else ())
        return oauth, bot_id, bot_token, secrets
    raise ConfigError(
        "no Bitrix24 connection is configured: set B24_WEBHOOK_URL "
        "(https://your-portal.bitrix24.com/rest/1/your_webhook_code/) and B24_BOT_ID, B24_BOT_TOKEN; "
        "or the OAuth variables B24_PORTAL_URL, B24_ACCESS_TOKEN, B24_REFRESH_TOKEN, B24_CLIENT_ID, "
        "B24_CLIENT_SECRET; or start with --demo to try the built-in demo portal"
    )
