"""The composition root: the parts a portal call is made of, picked once from the settings and handed in.

The Bitrix24 client, its auth and its stores know no settings beyond their own: whether the OAuth pair lives in
the token file or in Redis, and whether the bucket is this process's or the replicas', is decided here alone, so
no lower module reaches up to choose. It imports what it builds when it builds it: the client (and httpx) with
the first call, the Redis-backed parts only when B24_REDIS_URL is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .logs import redact
from .paths import default_journal_file
from .settings import CALL_BUDGET, Settings, WebhookConfig, token_file_of

if TYPE_CHECKING:  # the client, and httpx with it, load with the first call: start-up builds only the server
    import httpx

    from .bitrix24.auth import Auth
    from .bitrix24.client import B24Client, SharedPortal
    from .bitrix24.oauth import PairStore
    from .bitrix24.retry import RetryPolicy
    from .journal.drain import Journaled
    from .journal.inbox import Inbox


def make_auth(settings: Settings, http: httpx.AsyncClient) -> Auth:
    """The auth object for the configured mode; for OAuth, the renewal algorithm over the store the settings pick
    (Redis with B24_REDIS_URL, else the token file)."""
    from .bitrix24.auth import OAuth, Webhook

    if isinstance(settings.auth, WebhookConfig):
        return Webhook(settings.auth)
    from .bitrix24.oauth import OAuthSession
    from .bitrix24.token_server import TokenPair

    auth = settings.auth
    session = OAuthSession(
        http=http,
        token_url=auth.token_url,
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        seed=TokenPair(auth.access_token, auth.refresh_token),
        store=_pair_store(settings),
        limit=CALL_BUDGET * settings.timeout,  # a sent token request's own bound: longer than one HTTP phase
    )
    return OAuth(auth, session)


def _pair_store(settings: Settings) -> PairStore:
    assert not isinstance(settings.auth, WebhookConfig)
    if settings.team is not None and settings.team.redis is not None:  # B24_REDIS_URL: replicas share the pair
        from .bitrix24.redis_state import pair_store

        return pair_store(settings)
    from .bitrix24.token_file import TokenFile

    return TokenFile(token_file_of(settings.auth))


def shared_portal(settings: Settings) -> SharedPortal | None:
    """The replicas' shared bucket and blocks (B24_REDIS_URL), or None for a process on its own."""
    if settings.team is None or settings.team.redis is None:
        return None
    from .bitrix24.redis_state import SharedPortal as RedisPortal

    return RedisPortal(settings)


def make_client(settings: Settings, http: httpx.AsyncClient, retry: RetryPolicy | None = None) -> B24Client:
    """The Bitrix24 client with its auth and, for replicas, their shared state; `retry` for another back-off."""
    from .bitrix24.client import B24Client

    mask_secrets(settings)
    return B24Client(settings, http, make_auth(settings, http), shared_portal(settings), retry)


def mask_secrets(settings: Settings) -> None:
    """The settings' secrets (webhook code, bot token, OAuth credentials, Redis password) masked from now on, in
    every log line, error and tool result text: `logs.redact` is the one redactor, and this the one place that
    gives it the configured secrets (the OAuth renewal adds each rotated pair as it arrives)."""
    redact.add(settings.secrets)


def make_inbox(settings: Settings, client: Callable[[], B24Client], journaled: Journaled | None = None) -> Inbox | None:
    """The journal and its drain when B24_JOURNAL=on (the demo's in memory); None when it is off."""
    config = settings.journal
    if config is None:
        return None
    from .journal.drain import Drainer
    from .journal.inbox import Inbox
    from .journal.store import Journal

    if settings.team is not None and settings.team.redis is not None:  # replicas: one drains into Redis, all read it
        from .bitrix24.redis_state import Redis
        from .journal.shared import SharedDrainer, SharedLog

        shared = SharedLog(Redis(settings.team.redis), settings.host, settings.bot_id, days=config.days)
        journal = Journal(":memory:", days=config.days, messages=config.messages)
        return Inbox(SharedDrainer(client, journal, shared, journaled=journaled))
    path = ":memory:" if config.memory else config.file or default_journal_file(settings.host, settings.bot_id)
    drainer = Drainer(
        client, Journal(path, days=config.days, messages=config.messages), journaled=journaled, backfill=config.backfill
    )
    return Inbox(drainer)
