"""Configuration: every setting read from the environment, checked once, at start-up.

`load()` returns a `Settings` or raises one `ConfigError` listing every bad setting, one line each, naming the
variable and the expected form; the server returns it from every tool call, so a bad setting never crashes the
host's start-up. Hand-written rather than pydantic-settings: the messages are the product, and never echo a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from .errors import ConfigError, ConfigProblems, Problems
from .forms import (
    BOT_TOKEN_MAX,
    PORTAL_FORM,
    WEBHOOK_FORM,
    check_base_url,
    check_secret,
    copied_wrong,
    mask_webhook_url,
    number,
    parse_bot_id,
    parse_tools,
)
from .journal_settings import DAYS_MAX, MEMORY, JournalConfig, load_journal
from .paths import check_ca, check_token_file, default_token_file, token_path
from .variables import OAUTH_VARS, TEAM_VARS, VARIABLES

if TYPE_CHECKING:
    from .team import TeamConfig

DEMO_HOST = "demo.b24-mcp.invalid"
DEMO_WEBHOOK_URL = f"https://{DEMO_HOST}/rest/1/demo0webhook0code/"
DEMO_BOT_ID = 456
DEMO_NOTICE = "DEMO DATA from the built-in demo portal (b24-mcp --demo), not a real Bitrix24 account."
DEMO_BOT_TOKEN = "demo-bot-token"  # noqa: S105 - the demo portal's published sample token, not a secret

FILE_MAX_BYTES = 5 * 1024 * 1024  # B24_FILE_MAX_BYTES' default: a screenshot or a spec, not a video
FILE_MAX_BYTES_LIMIT = 100 * 1024 * 1024  # the most it may be set to: a file is read into memory whole
CALL_BUDGET = 3  # a get_chat call ends within 3 x B24_TIMEOUT, whatever the portal does
# A tool result's size in characters, text blocks and structured content together: Claude Code warns from 10,000
# tokens and refuses 25,000 (MAX_MCP_OUTPUT_TOKENS). The floor keeps one whole 20,000-character message readable.
RESULT_BUDGET = 40_000
RESULT_BUDGET_MIN = 24_000


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_WEBHOOK_PATH = re.compile(r"^/rest/(?P<user>[0-9]+)/(?P<code>[A-Za-z0-9_-]+)/?$")


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
    file_max_bytes: int = FILE_MAX_BYTES  # get_file reads at most this much of a file, decompressed
    demo: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)
    team: TeamConfig | None = None  # B24_REDIS_URL and the HTTP auth variables (team.py)
    tools: tuple[str, ...] | None = None  # B24_TOOLS: the tools to list; None: all
    result_budget: int = RESULT_BUDGET
    journal: JournalConfig | None = None  # B24_JOURNAL=on (journal_settings.py); the demo's is in memory

    @property
    def mode(self) -> Literal["webhook", "oauth"]:
        return "webhook" if isinstance(self.auth, WebhookConfig) else "oauth"

    @property
    def host(self) -> str:
        return self.auth.host


# --- each value -----------------------------------------------------------------------------------------------


def parse_webhook_url(raw: str) -> WebhookConfig:
    var = "B24_WEBHOOK_URL"
    scheme, netloc, path = check_base_url(var, raw, WEBHOOK_FORM)
    match = _WEBHOOK_PATH.match(path)
    if match is None:
        # People paste the URL of a method call ("…/rest/1/code/profile.json"): say so, without the code.
        extra = re.match(r"^/rest/[0-9]+/[^/]+/(.+)$", path)
        hint = f" (remove the trailing '{extra.group(1)}')" if extra else ""
        raise ConfigError(
            f"{var} must be the inbound webhook URL ending right after the webhook code{hint}; "
            f"the path is not /rest/{{user_id}}/{{webhook_code}}/; expected {WEBHOOK_FORM}"
        )
    url = f"{scheme}://{netloc}/rest/{match['user']}/{match['code']}/"
    return WebhookConfig(url=url, code=match["code"])


def parse_portal_url(raw: str) -> str:
    scheme, netloc, path = check_base_url("B24_PORTAL_URL", raw, PORTAL_FORM)
    if path.strip("/") not in ("", "rest"):
        raise ConfigError(f"B24_PORTAL_URL must be the portal's address only, with no path; expected {PORTAL_FORM}")
    return f"{scheme}://{netloc}"


def parse_oauth_server(raw: str) -> str:
    form = "https://oauth.bitrix.info (on-premise portals: the portal's own address)"
    scheme, netloc, path = check_base_url("B24_OAUTH_SERVER", raw, form)
    if path.strip("/") not in ("", "oauth/token", "oauth"):
        raise ConfigError(f"B24_OAUTH_SERVER must be the OAuth server's address only; expected {form}")
    return f"{scheme}://{netloc}"


def _burst(raw: str) -> int:
    value = number(raw, "B24_RATE_BURST", 10, 0, 10_000, "a whole number of requests, e.g. 10 (Enterprise: 250)")
    if value != int(value):
        raise ConfigError(f"B24_RATE_BURST={raw!r} must be a whole number, e.g. 10")
    return int(value)


def _file_max_bytes(raw: str) -> int:
    form = f"a whole number of bytes from 1024 to {FILE_MAX_BYTES_LIMIT} (100 MiB), e.g. {FILE_MAX_BYTES} (5 MiB)"
    value = number(raw, "B24_FILE_MAX_BYTES", FILE_MAX_BYTES, 1023, FILE_MAX_BYTES_LIMIT, form)
    if value != int(value):
        raise ConfigError(f"B24_FILE_MAX_BYTES={raw!r} must be {form}")
    return int(value)


def _log_level(raw: str) -> str:
    if raw and raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"B24_LOG_LEVEL={raw!r} is not a log level; expected one of {', '.join(LOG_LEVELS)}")
    return raw.upper() or "WARNING"


def token_file_of(auth: OAuthConfig) -> Path:
    """Where the OAuth token pair lives: B24_TOKEN_FILE, or the default file in the user's data directory."""

    return auth.token_file or default_token_file(auth.host, auth.client_id)


def log_level(env: Mapping[str, str]) -> str:
    """Read separately from `load()`: logging must be set up even when the rest of the configuration is bad."""
    try:
        return _log_level(env.get("B24_LOG_LEVEL", "").strip())
    except ConfigError:
        return "WARNING"  # the default; load() reports the bad value


def load(env: Mapping[str, str], *, demo: bool = False, tools: Sequence[str] = ()) -> Settings:
    """Read and check every setting; raise one `ConfigError` listing every bad one (`problems_of`). `tools` are the
    tool names B24_TOOLS may choose from (none given: any name is taken)."""
    problems = Problems()
    present: set[str] = set()  # set, even if refused below: it still decides the mode
    values: dict[str, str] = {}
    for var in VARIABLES:
        value = env.get(var.name, "").strip()
        if not value or (demo and var.group not in ("tuning", "team")):  # the demo: its own portal, bot, no CA
            continue
        present.add(var.name)
        wrong = copied_wrong(var.name, value, secret=var.shown == "secret")
        if wrong:
            problems.add(wrong, var.name)
        else:
            values[var.name] = value

    def get(name: str) -> str:
        return values.get(name, "")

    problems.take(lambda: _log_level(get("B24_LOG_LEVEL")), "B24_LOG_LEVEL")
    timeout = problems.take(
        lambda: number(
            get("B24_TIMEOUT"), "B24_TIMEOUT", 10.0, 0, 60, "seconds one request may take, e.g. 10 (at most 60)"
        ),
        "B24_TIMEOUT",
    )
    rate = problems.take(
        lambda: number(
            get("B24_RATE_LIMIT"), "B24_RATE_LIMIT", 2.0, 0, 1000, "requests per second, e.g. 2 (Enterprise plans: 5)"
        ),
        "B24_RATE_LIMIT",
    )
    burst = problems.take(lambda: _burst(get("B24_RATE_BURST")), "B24_RATE_BURST")
    listed = problems.take(lambda: parse_tools(get("B24_TOOLS"), tools), "B24_TOOLS")
    budget = problems.take(
        lambda: number(
            get("B24_RESULT_BUDGET"),
            "B24_RESULT_BUDGET",
            RESULT_BUDGET,
            RESULT_BUDGET_MIN - 1,
            10**7,
            f"characters, e.g. {RESULT_BUDGET} (at least {RESULT_BUDGET_MIN:,})",
        ),
        "B24_RESULT_BUDGET",
    )
    file_max = problems.take(lambda: _file_max_bytes(get("B24_FILE_MAX_BYTES")), "B24_FILE_MAX_BYTES")
    journal = problems.take(lambda: load_journal(get), "B24_JOURNAL")
    if demo:
        journal = JournalConfig(file=Path(MEMORY), days=DAYS_MAX, backfill=0, memory=True)  # its messages are old
        auth: WebhookConfig | OAuthConfig | None = parse_webhook_url(DEMO_WEBHOOK_URL)
        bot_id: int | None = DEMO_BOT_ID
        bot_token: str | None = DEMO_BOT_TOKEN
        secrets: tuple[str, ...] = ()
    else:
        auth, bot_id, bot_token, secrets = _auth(get, present, problems)
        if not {"SSL_CERT_FILE", "SSL_CERT_DIR"} & (present - set(values)):  # not already refused as an example
            problems.take(lambda: check_ca(env), "SSL_CERT_FILE")
    team = None
    if any(v.group == "team" and v.name in values for v in VARIABLES):
        from .team import load as load_team  # a team's deployment only: a desktop start never loads it

        team = problems.take(lambda: load_team(values), TEAM_VARS[0])  # the team's, in their own order, last
        if team is not None and team.redis is not None:
            secrets = (*secrets, *team.redis.secrets)  # masked wherever the URL might be quoted
    if (
        problems.lines
        or auth is None
        or timeout is None
        or rate is None
        or burst is None
        or budget is None
        or file_max is None
    ):
        order = {v.name: i for i, v in enumerate(VARIABLES)}  # problems in the table's order; the whole setup's first
        noted = sorted(problems.noted, key=lambda problem: order.get(problem[0] or "", -1))
        raise ConfigProblems([line for _, line in noted] or ["the configuration could not be read"])
    return Settings(
        auth=auth,
        bot_id=bot_id,
        bot_token=bot_token,
        timeout=timeout,
        rate_limit=rate,
        rate_burst=burst,
        file_max_bytes=file_max,
        demo=demo,
        secrets=secrets,
        team=team,
        tools=listed,
        result_budget=int(budget),
        journal=journal,
    )


def _auth(
    get: Callable[[str], str], present: set[str], problems: Problems
) -> tuple[WebhookConfig | OAuthConfig | None, int | None, str | None, tuple[str, ...]]:
    """Which way to authenticate, decided by which variables are set; and the secrets to keep out of output."""
    bot_id = (
        problems.take(lambda: parse_bot_id(get("B24_BOT_ID"), "B24_BOT_ID"), "B24_BOT_ID")
        if get("B24_BOT_ID")
        else None
    )
    raw_token = get("B24_BOT_TOKEN")
    bot_token = (
        problems.take(lambda: check_secret(raw_token, "B24_BOT_TOKEN", BOT_TOKEN_MAX), "B24_BOT_TOKEN")
        if raw_token
        else None
    )
    oauth_set = [name for name in OAUTH_VARS if name in present]

    if "B24_WEBHOOK_URL" in present and oauth_set:
        problems.add(
            f"both B24_WEBHOOK_URL and OAuth settings ({', '.join(oauth_set)}) are set; "
            "choose one way to authenticate and unset the other"
        )
        return None, bot_id, bot_token, ()
    if "B24_WEBHOOK_URL" in present:
        raw = get("B24_WEBHOOK_URL")
        webhook = problems.take(lambda: parse_webhook_url(raw), "B24_WEBHOOK_URL") if raw else None
        secrets = tuple(s for s in (webhook.code if webhook else None, bot_token) if s)
        return webhook, bot_id, bot_token, secrets
    if oauth_set:
        oauth = _oauth(get, present, problems)
        secrets = (oauth.access_token, oauth.refresh_token, oauth.client_secret) if oauth else ()
        return oauth, bot_id, bot_token, secrets + ((bot_token,) if bot_token else ())
    problems.add(
        f"no Bitrix24 connection is configured: set B24_WEBHOOK_URL ({WEBHOOK_FORM}) and B24_BOT_ID, "
        "B24_BOT_TOKEN; or the OAuth variables B24_PORTAL_URL, B24_ACCESS_TOKEN, B24_REFRESH_TOKEN, B24_CLIENT_ID, "
        "B24_CLIENT_SECRET; or start with --demo to try the built-in demo portal"
    )
    return None, bot_id, bot_token, ()


def _oauth(get: Callable[[str], str], present: set[str], problems: Problems) -> OAuthConfig | None:
    """The OAuth application's settings, each checked, every problem noted; None if any is bad."""
    missing = [name for name in OAUTH_VARS if name not in present]
    if missing:
        problems.add(
            f"OAuth mode needs {', '.join(OAUTH_VARS)}; missing: {', '.join(missing)} "
            "(or use B24_WEBHOOK_URL instead of OAuth)"
        )

    def checked(name: str, parse: Callable[[str], str]) -> str | None:
        raw = get(name)
        return problems.take(lambda: parse(raw), name) if raw else None

    portal_url = checked("B24_PORTAL_URL", parse_portal_url)
    access_token = checked("B24_ACCESS_TOKEN", lambda v: check_secret(v, "B24_ACCESS_TOKEN"))
    refresh_token = checked("B24_REFRESH_TOKEN", lambda v: check_secret(v, "B24_REFRESH_TOKEN"))
    client_id = checked("B24_CLIENT_ID", lambda v: check_secret(v, "B24_CLIENT_ID"))
    client_secret = checked("B24_CLIENT_SECRET", lambda v: check_secret(v, "B24_CLIENT_SECRET"))
    server_set = "B24_OAUTH_SERVER" in present
    oauth_server = checked("B24_OAUTH_SERVER", parse_oauth_server) if server_set else "https://oauth.bitrix.info"
    raw_file = get("B24_TOKEN_FILE")
    token_file = problems.take(lambda: token_path(raw_file), "B24_TOKEN_FILE") if raw_file else None
    if not (portal_url and access_token and refresh_token and client_id and client_secret and oauth_server):
        return None
    if "B24_TOKEN_FILE" in present and token_file is None:
        return None
    oauth = OAuthConfig(
        portal_url=portal_url,
        access_token=access_token,
        refresh_token=refresh_token,
        client_id=client_id,
        client_secret=client_secret,
        oauth_server=oauth_server,
        token_file=token_file,
    )
    problems.take(lambda: check_token_file(token_file_of(oauth), explicit=token_file is not None), "B24_TOKEN_FILE")
    return oauth
