"""Configuration: each bad setting is one ConfigError naming the variable, never echoing a secret."""

from __future__ import annotations

import pytest

from b24_mcp import settings as config
from b24_mcp.errors import ConfigError
from tests.values import CODE, HOOK, HOST


def load(**env: str) -> config.Settings:
    return config.load(env)


def test_webhook_settings_are_normalised() -> None:
    s = load(B24_WEBHOOK_URL=HOOK.rstrip("/"), B24_BOT_ID=" 456 ", B24_BOT_TOKEN="tok-abc-123")
    assert s.mode == "webhook" and isinstance(s.auth, config.WebhookConfig)
    assert s.auth.url == HOOK  # trailing slash added
    assert s.bot_id == 456 and s.bot_token == "tok-abc-123"
    assert s.host == HOST
    assert CODE in s.secrets and "tok-abc-123" in s.secrets
    assert CODE not in repr(s)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://acme.bitrix24.com/rest/1/abcdef123/", "https"),
        ("ftp://acme.bitrix24.com/rest/1/abcdef123/", "absolute http(s) URL"),
        ("acme.bitrix24.com/rest/1/abcdef123/", "absolute http(s) URL"),
        ("https://acme.bitrix24.com/", "ending right after the webhook code"),
        ("https://acme.bitrix24.com/rest/abc/abcdef123/", "ending right after the webhook code"),
        ("https://acme.bitrix24.com/rest/1/abcdef123/profile.json", "remove the trailing 'profile.json'"),
        ("https://acme.bitrix24.com/rest/1/abcdef123/?x=1", "query string"),
        ("https://user:pw@acme.bitrix24.com/rest/1/abcdef123/", "user:password"),
        ("https://acme.bitrix24.com:99999/rest/1/abcdef123/", "not a valid URL"),
    ],
)
def test_bad_webhook_urls_name_the_variable_and_hide_the_code(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(B24_WEBHOOK_URL=url)
    message = str(info.value)
    assert message.startswith("B24_WEBHOOK_URL")
    assert fragment in message
    assert "abcdef123" not in message
    assert "\n" not in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "localhost", "[::1]"])
def test_plain_http_is_allowed_for_loopback_stand_ins(host: str) -> None:
    s = load(B24_WEBHOOK_URL=f"http://{host}:8080/rest/1/{CODE}/")
    assert isinstance(s.auth, config.WebhookConfig) and s.auth.url.startswith("http://")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"B24_BOT_ID": "0"}, "B24_BOT_ID must be a positive integer"),
        ({"B24_BOT_ID": "abc"}, "B24_BOT_ID must be a positive integer"),
        ({"B24_BOT_ID": "99999999999"}, "B24_BOT_ID must be a positive integer"),
        ({"B24_BOT_TOKEN": "has space inside"}, "B24_BOT_TOKEN contains spaces"),
        ({"B24_BOT_TOKEN": "x" * 41}, "B24_BOT_TOKEN is 41 characters long"),
        ({"B24_TIMEOUT": "soon"}, "B24_TIMEOUT='soon' is not a number"),
        ({"B24_TIMEOUT": "0"}, "B24_TIMEOUT='0' is out of range"),
        ({"B24_TIMEOUT": "61"}, "B24_TIMEOUT='61' is out of range"),
        ({"B24_RATE_LIMIT": "-1"}, "B24_RATE_LIMIT='-1' is out of range"),
        ({"B24_RATE_BURST": "2.5"}, "B24_RATE_BURST='2.5' must be a whole number"),
        ({"B24_LOG_LEVEL": "LOUD"}, "B24_LOG_LEVEL='LOUD' is not a log level"),
    ],
)
def test_each_bad_setting_is_named(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        config.load({"B24_WEBHOOK_URL": HOOK, **env})


def test_bad_token_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load(B24_WEBHOOK_URL=HOOK, B24_BOT_TOKEN="secret with spaces")
    assert "secret" not in str(info.value).replace("B24_BOT_TOKEN", "")


def test_nothing_configured_explains_every_way_in() -> None:
    with pytest.raises(ConfigError) as info:
        load()
    message = str(info.value)
    for name in ("B24_WEBHOOK_URL", "B24_BOT_ID", "B24_PORTAL_URL", "--demo"):
        assert name in message


def test_webhook_and_oauth_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="both B24_WEBHOOK_URL and OAuth settings"):
        load(B24_WEBHOOK_URL=HOOK, B24_ACCESS_TOKEN="abcdefgh")


def test_half_of_oauth_names_what_is_missing() -> None:
    with pytest.raises(ConfigError) as info:
        load(B24_PORTAL_URL="https://acme.bitrix24.com", B24_ACCESS_TOKEN="abcdefgh")
    assert "missing: B24_REFRESH_TOKEN, B24_CLIENT_ID, B24_CLIENT_SECRET" in str(info.value)


def test_oauth_settings() -> None:
    s = load(
        B24_PORTAL_URL="https://acme.bitrix24.com/",
        B24_ACCESS_TOKEN="access-1111",
        B24_REFRESH_TOKEN="refresh-2222",
        B24_CLIENT_ID="local.abc",
        B24_CLIENT_SECRET="client-secret-3333",
        B24_BOT_ID="456",
    )
    assert s.mode == "oauth"
    assert isinstance(s.auth, config.OAuthConfig)
    assert s.auth.portal_url == "https://acme.bitrix24.com"
    assert s.auth.token_url == "https://oauth.bitrix.info/oauth/token/"
    assert {"access-1111", "refresh-2222", "client-secret-3333"} <= set(s.secrets)


def test_demo_needs_nothing() -> None:
    s = config.load({}, demo=True)
    assert s.demo and s.bot_id == config.DEMO_BOT_ID and s.host == config.DEMO_HOST


def test_log_level_never_fails() -> None:
    assert config.log_level({"B24_LOG_LEVEL": "debug"}) == "DEBUG"
    assert config.log_level({"B24_LOG_LEVEL": "nonsense"}) == "WARNING"
    assert config.log_level({}) == "WARNING"


def test_reprs_hide_every_secret() -> None:
    s = load(
        B24_PORTAL_URL="https://acme.bitrix24.com",
        B24_ACCESS_TOKEN="access-1111",
        B24_REFRESH_TOKEN="refresh-2222",
        B24_CLIENT_ID="local.abc",
        B24_CLIENT_SECRET="client-secret-3333",
        B24_BOT_TOKEN="bot-token-4444",
    )
    for secret in ("access-1111", "refresh-2222", "client-secret-3333", "bot-token-4444"):
        assert secret not in repr(s)
