"""Every variable b24-mcp reads: its name, what of its value may be shown, its group and its meaning.

The one home of their names: `settings` reads them, `check` reports them, the help and the README list them, and
a near miss of one (BITRIX24_WEBHOOK_URL, say) is named with the variable meant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Variable:
    """One setting: its name, how much of its value may be shown, and what it means (one line)."""

    name: str
    meaning: str
    shown: Literal["value", "masked", "secret"] = "value"  # masked: a URL whose webhook code is hidden
    group: Literal["webhook", "bot", "oauth", "oauth-optional", "tuning", "tls", "team"] = "tuning"


# The one home of the variables' names, what of each may be shown and their meanings: `check`, the help text and
# the unknown-variable warning ("did you mean ...?") all read it.
VARIABLES: tuple[Variable, ...] = (
    Variable("B24_WEBHOOK_URL", "webhook URL: https://{portal}/rest/{user_id}/{code}/", "masked", "webhook"),
    Variable("B24_BOT_ID", "the bot's id (a tool's botId argument overrides it)", "value", "bot"),
    Variable("B24_BOT_TOKEN", "the bot's token, chosen at registration (webhooks only)", "secret", "bot"),
    Variable("B24_PORTAL_URL", "OAuth: the portal, https://{portal}", "value", "oauth"),
    Variable("B24_ACCESS_TOKEN", "OAuth: the app's access token (seeds the first run)", "secret", "oauth"),
    Variable("B24_REFRESH_TOKEN", "OAuth: the app's refresh token (seeds the first run)", "secret", "oauth"),
    Variable("B24_CLIENT_ID", "OAuth: the application's client_id (local.…)", "value", "oauth"),
    Variable("B24_CLIENT_SECRET", "OAuth: the application's client_secret", "secret", "oauth"),
    Variable("B24_OAUTH_SERVER", "OAuth: the token server (on-premise: the portal itself)", "value", "oauth-optional"),
    Variable("B24_TOKEN_FILE", "OAuth: where the rotated token pair is kept", "value", "oauth-optional"),
    Variable("B24_TIMEOUT", "seconds one request to the portal may take"),
    Variable("B24_RATE_LIMIT", "requests per second b24-mcp allows itself"),
    Variable("B24_RATE_BURST", "requests b24-mcp may send at once"),
    Variable("B24_FILE_MAX_BYTES", "the most bytes get_file reads of a file (decompressed)"),
    Variable("B24_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR; logs go to stderr"),
    Variable("B24_TOOLS", "the tools to list, comma-separated (default: all)"),
    Variable("B24_RESULT_BUDGET", "characters one tool result may take (text and JSON)"),
    Variable("B24_JOURNAL", "on: keep a journal of the bot's events (inbox tools)"),
    Variable("B24_JOURNAL_FILE", "where the journal is kept (default: data directory)"),
    Variable("B24_JOURNAL_DAYS", "days of messages the journal keeps (default 90)"),
    Variable("B24_JOURNAL_MESSAGES", "at most this many messages kept (default: no limit)"),
    Variable("B24_JOURNAL_BACKFILL", "history pages read when a chat appears (default 2)"),
    Variable("SSL_CERT_FILE", "a CA bundle (PEM) for a portal with an internal CA", "value", "tls"),
    Variable("SSL_CERT_DIR", "CA certificates' directory (if SSL_CERT_FILE is unset)", "value", "tls"),
    # The team deployment's (Streamable HTTP with authentication, replicas sharing state; parsed by team.py).
    Variable("B24_HTTP_TOKENS_FILE", "HTTP: a file of accepted bearer tokens' SHA-256 digests", "value", "team"),
    Variable("B24_HTTP_JWKS_URL", "HTTP: the identity provider's JWKS URL (to accept JWTs)", "value", "team"),
    Variable("B24_HTTP_ISSUER", "HTTP: the exact iss of the identity provider's tokens", "value", "team"),
    Variable("B24_HTTP_AUDIENCE", "HTTP: the aud of tokens meant for this server", "value", "team"),
    Variable("B24_HTTP_RESOURCE_URL", "HTTP: the endpoint's public URL (in the JWT metadata)", "value", "team"),
    Variable("B24_REDIS_URL", "replicas' state: redis://[:password@]host:port/db", "secret", "team"),
)
KNOWN = {v.name: v for v in VARIABLES}
SECRET_VARS = tuple(v.name for v in VARIABLES if v.shown == "secret")
OAUTH_VARS = tuple(v.name for v in VARIABLES if v.group == "oauth")
TEAM_VARS = tuple(v.name for v in VARIABLES if v.group == "team")

_NEAR_PREFIX = re.compile(r"(BITRIX24|BITRIX|B24)_?")  # BITRIX24_WEBHOOK_URL, B24WEBHOOK_URL: near misses


def unknown_variables(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """B24_* names b24-mcp does not read, each with the likeliest intended name, and BITRIX*_ names that are near
    misses of one (other tools' BITRIX_* variables are not ours to name). Names only: values may be secret."""
    known = [v.name for v in VARIABLES if v.name.startswith("B24_")]
    found: list[tuple[str, str | None]] = []
    for name in sorted(n for n in names if n not in KNOWN):
        upper = name.upper()
        prefix = _NEAR_PREFIX.match(upper)
        if prefix is None:
            continue
        import difflib  # only when there is something to suggest

        ours = upper.startswith("B24_")
        guess = difflib.get_close_matches(upper if ours else "B24_" + upper[prefix.end() :], known, n=1, cutoff=0.75)
        if ours or guess:
            found.append((name, guess[0] if guess else None))
    return found


def unknown_warning(names: Iterable[str]) -> str | None:
    """One line naming the unknown B24_* variables (never their values), or None when there are none."""
    unknown = unknown_variables(names)
    if not unknown:
        return None
    listed = ", ".join(f"{name} (did you mean {guess}?)" if guess else name for name, guess in unknown)
    many = len(unknown) > 1
    return f"ignoring unknown variable{'s' if many else ''} {listed}: b24-mcp does not read {'them' if many else 'it'}"
