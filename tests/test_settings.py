"""Configuration: every bad setting, one line each naming the variable, in one ConfigError; never a secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from b24_mcp import settings as config
from b24_mcp import variables
from b24_mcp.errors import ConfigError, problems_of
from b24_mcp.paths import check_ca
from tests.values import CODE, HOOK, HOST, TOKEN


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


# An OAuth setup whose secrets are this module's own, each searchable by itself.
OAUTH_SECRETS = {
    "B24_ACCESS_TOKEN": "access-1111",
    "B24_REFRESH_TOKEN": "refresh-2222",
    "B24_CLIENT_SECRET": "client-secret-3333",
}
OAUTH = {"B24_PORTAL_URL": "https://acme.bitrix24.com/", "B24_CLIENT_ID": "local.abc", **OAUTH_SECRETS}


def test_oauth_settings() -> None:
    s = load(**OAUTH, B24_BOT_ID="456")
    assert s.mode == "oauth"
    assert isinstance(s.auth, config.OAuthConfig)
    assert s.auth.portal_url == "https://acme.bitrix24.com"
    assert s.auth.token_url == "https://oauth.bitrix.info/oauth/token/"
    assert set(OAUTH_SECRETS.values()) <= set(s.secrets)


def test_demo_needs_nothing() -> None:
    s = config.load({}, demo=True)
    assert s.demo and s.bot_id == config.DEMO_BOT_ID and s.host == config.DEMO_HOST


def test_log_level_never_fails() -> None:
    assert config.log_level({"B24_LOG_LEVEL": "debug"}) == "DEBUG"
    assert config.log_level({"B24_LOG_LEVEL": "nonsense"}) == "WARNING"
    assert config.log_level({}) == "WARNING"


def test_reprs_hide_every_secret() -> None:
    s = load(**OAUTH, B24_BOT_TOKEN="bot-token-4444")
    for secret in (*OAUTH_SECRETS.values(), "bot-token-4444"):
        assert secret not in repr(s)


# -- every bad setting at once, one line each ----------------------------------------------------------------------


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load(B24_WEBHOOK_URL=f"http://acme.bitrix24.com/rest/1/{CODE}/", B24_BOT_ID="abc", B24_TIMEOUT="soon")
    problems = problems_of(info.value)
    assert [p.split(" ", 1)[0] for p in problems] == ["B24_WEBHOOK_URL", "B24_BOT_ID", "B24_TIMEOUT='soon'"]
    assert all("\n" not in p for p in problems)
    assert str(info.value).startswith("3 settings need fixing: (1) B24_WEBHOOK_URL must use https://")
    assert CODE not in str(info.value)


def test_one_bad_setting_reads_as_before() -> None:
    with pytest.raises(ConfigError) as info:
        load(B24_WEBHOOK_URL=HOOK, B24_TIMEOUT="soon")
    assert problems_of(info.value) == (str(info.value),)
    assert str(info.value).startswith("B24_TIMEOUT='soon' is not a number")


def test_every_bad_oauth_setting_is_reported_with_what_is_missing() -> None:
    with pytest.raises(ConfigError) as info:
        load(B24_PORTAL_URL="https://acme.bitrix24.com/some/path", B24_ACCESS_TOKEN="has space", B24_CLIENT_ID="x")
    problems = problems_of(info.value)
    assert len(problems) == 3
    assert "missing: B24_REFRESH_TOKEN, B24_CLIENT_SECRET" in problems[0]
    assert problems[1].startswith("B24_PORTAL_URL must be the portal's address only")
    assert problems[2].startswith("B24_ACCESS_TOKEN contains spaces")


# -- values copied wrong: the README's examples, quotes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "example"),
    [
        ("B24_WEBHOOK_URL", "https://your-portal.bitrix24.com/rest/1/your_webhook_code/", "your-portal"),
        ("B24_WEBHOOK_URL", "https://acme.bitrix24.com/rest/1/your_webhook_code/", "your_webhook_code"),
        ("B24_WEBHOOK_URL", "https://acme.bitrix24.com/rest/1/abc123xyz/", "abc123xyz"),
        ("B24_BOT_TOKEN", "your_bot_token", "your_bot_token"),
        ("B24_CLIENT_SECRET", "your_client_secret", "your_client_secret"),
        ("B24_TOKEN_FILE", "/absolute/path/to/b24-mcp-tokens.json", "/absolute/path/to/"),
        ("SSL_CERT_FILE", "/absolute/path/to/ca.pem", "/absolute/path/to/"),
    ],
)
def test_example_values_are_refused_in_one_line(name: str, value: str, example: str) -> None:
    env = (
        {"B24_WEBHOOK_URL": HOOK, "B24_BOT_TOKEN": "tok-abc-123"} if name.startswith(("B24_W", "B24_B", "SSL")) else {}
    )
    if not env:
        env = {
            "B24_PORTAL_URL": "https://acme.bitrix24.com",
            "B24_ACCESS_TOKEN": "access-1111",
            "B24_REFRESH_TOKEN": "refresh-2222",
            "B24_CLIENT_ID": "local.abc",
            "B24_CLIENT_SECRET": "client-secret-3333",
        }
    with pytest.raises(ConfigError) as info:
        config.load({**env, name: value})
    (problem,) = problems_of(info.value)
    assert problem == (
        f"{name} still holds an example value ('{example}') from the README or claude_config.example.json: "
        "replace it with your own"
    )


@pytest.mark.parametrize("quote", ["'", '"', "“"])
def test_a_quoted_url_is_told_to_lose_its_quotes(quote: str) -> None:
    closing = "”" if quote == "“" else quote
    with pytest.raises(ConfigError) as info:
        load(B24_WEBHOOK_URL=f"{quote}{HOOK}{closing}")
    (problem,) = problems_of(info.value)
    assert problem == "B24_WEBHOOK_URL is wrapped in quotes, which became part of the value: remove them"
    assert CODE not in problem


def test_a_token_is_refused_only_when_both_ends_are_quoted() -> None:
    assert load(B24_WEBHOOK_URL=HOOK, B24_BOT_TOKEN="tok'en'").bot_token == "tok'en'"
    with pytest.raises(ConfigError, match="B24_BOT_TOKEN is wrapped in quotes"):
        load(B24_WEBHOOK_URL=HOOK, B24_BOT_TOKEN="'token'")


def test_the_expected_form_survives_the_redactor() -> None:
    """The message quotes the form of a webhook URL; the log and tool-result redactor must not mask it."""
    from b24_mcp.logs import redact

    with pytest.raises(ConfigError) as info:
        load(B24_WEBHOOK_URL="https://acme.bitrix24.com/")
    assert redact(str(info.value)) == str(info.value)
    assert "/rest/{user_id}/{webhook_code}/" in str(info.value)


def test_the_demo_ignores_what_it_does_not_use() -> None:
    s = config.load(
        {"B24_WEBHOOK_URL": "https://your-portal.bitrix24.com/rest/1/x/", "SSL_CERT_FILE": "/nope"}, demo=True
    )
    assert s.demo
    with pytest.raises(ConfigError, match="B24_TIMEOUT"):
        config.load({"B24_TIMEOUT": "soon"}, demo=True)


# -- paths: SSL_CERT_FILE and B24_TOKEN_FILE, checked at start-up -------------------------------------------------


def test_ssl_cert_file_is_checked_at_start_up(tmp_path: Path, ca: trustme.CA) -> None:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    assert load(B24_WEBHOOK_URL=HOOK, SSL_CERT_FILE=str(pem)).host == HOST
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    for value, why in [
        (str(tmp_path / "missing.pem"), "does not exist"),
        ("ca.pem", "does not exist (a relative path depends on the directory the host starts in)"),
        (str(tmp_path), "is not a file"),
        (str(not_pem), "holds no PEM certificate"),
    ]:
        with pytest.raises(ConfigError) as info:
            load(B24_WEBHOOK_URL=HOOK, SSL_CERT_FILE=value)
        assert str(info.value).startswith(f"SSL_CERT_FILE={value!r} {why}"), str(info.value)
    # A PEM that looks right but is not: only parsing finds it (the doctor does; at start-up httpx does, later).
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    env = {"SSL_CERT_FILE": str(broken)}
    check_ca(env)
    with pytest.raises(ConfigError, match=r"could not be loaded as a CA bundle \(SSLError\)"):
        check_ca(env, load=True)


def test_ssl_cert_dir_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SSL_CERT_DIR=.* is not a directory"):
        load(B24_WEBHOOK_URL=HOOK, SSL_CERT_DIR=str(tmp_path / "nowhere"))


def oauth(**extra: str) -> dict[str, str]:
    return {
        "B24_PORTAL_URL": "https://acme.bitrix24.com",
        "B24_ACCESS_TOKEN": "access-1111",
        "B24_REFRESH_TOKEN": "refresh-2222",
        "B24_CLIENT_ID": "local.abc",
        "B24_CLIENT_SECRET": "client-secret-3333",
        **extra,
    }


def test_token_file_problems_are_caught_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    cases = [
        ("tokens.json", "is a relative path"),
        (str(tmp_path), "is a directory"),
        (str(tmp_path / "a-file" / "tokens.json"), f"cannot be created: {tmp_path / 'a-file'} is a file"),
    ]
    for value, why in cases:
        with pytest.raises(ConfigError) as info:
            config.load(oauth(B24_TOKEN_FILE=value))
        (problem,) = problems_of(info.value)
        assert problem.startswith("B24_TOKEN_FILE=") and why in problem, problem
    # Not writable by this user (os.access answers for the user, even for root, who may write anywhere).
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(ConfigError, match=f"cannot be created: this user may not write to {locked}"):
        config.load(oauth(B24_TOKEN_FILE=str(locked / "sub" / "tokens.json")))
    existing = locked / "tokens.json"
    existing.write_text("{}")
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != existing)
    with pytest.raises(ConfigError, match="cannot be read and written by this user"):
        config.load(oauth(B24_TOKEN_FILE=str(existing)))
    # A writable file in a read-only directory: the renewed pair is saved by a rename there, which would fail.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(ConfigError, match=f"in a directory this user may not write to \\({locked}\\)"):
        config.load(oauth(B24_TOKEN_FILE=str(existing)))


def test_default_token_file_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.write_text("")  # the user data directory is a file: nothing can be made under it
    monkeypatch.setattr("platformdirs.user_data_path", lambda app: data / app)
    with pytest.raises(ConfigError) as info:
        config.load(oauth())
    assert str(info.value).startswith(f"The OAuth token file {data / 'b24-mcp'}")
    assert "set B24_TOKEN_FILE to move it" in str(info.value)


# -- the variables: one table, unknown ones named with a suggestion --------------------------------------------------


def test_unknown_variables_are_named_never_shown() -> None:
    env = {
        "B24_BOT_TOKN": TOKEN,
        "B24_OLD_WEBHOOK_URL": HOOK,
        "B24_SOMETHING": "x",
        "B24_BOT_TOKEN": TOKEN,
        "PATH": "/bin",
    }
    assert variables.unknown_variables(env) == [
        ("B24_BOT_TOKN", "B24_BOT_TOKEN"),
        ("B24_OLD_WEBHOOK_URL", "B24_WEBHOOK_URL"),
        ("B24_SOMETHING", None),
    ]
    warning = variables.unknown_warning(env)
    assert warning == (
        "ignoring unknown variables B24_BOT_TOKN (did you mean B24_BOT_TOKEN?), B24_OLD_WEBHOOK_URL (did you mean "
        "B24_WEBHOOK_URL?), B24_SOMETHING: b24-mcp does not read them"
    )
    assert variables.unknown_warning({"B24_BOT_ID": "1"}) is None
    # Other prefixes are named only as near misses of a b24-mcp variable (other tools' BITRIX_* are not ours).
    near = {"BITRIX24_WEBHOOK_URL": HOOK, "BITRIX_BOT_ID": "1", "BITRIX_USER": "x", "b24_bot_token": TOKEN}
    assert variables.unknown_variables(near) == [
        ("BITRIX24_WEBHOOK_URL", "B24_WEBHOOK_URL"),
        ("BITRIX_BOT_ID", "B24_BOT_ID"),
        ("b24_bot_token", "B24_BOT_TOKEN"),
    ]


def test_the_table_of_variables_is_the_one_home_of_their_names() -> None:
    names = [v.name for v in variables.VARIABLES]
    assert len(names) == len(set(names))
    assert set(variables.SECRET_VARS) == {
        "B24_BOT_TOKEN",
        "B24_ACCESS_TOKEN",
        "B24_REFRESH_TOKEN",
        "B24_CLIENT_SECRET",
        "B24_REDIS_URL",  # may carry a password
    }
    assert variables.OAUTH_VARS == (
        "B24_PORTAL_URL", "B24_ACCESS_TOKEN", "B24_REFRESH_TOKEN", "B24_CLIENT_ID", "B24_CLIENT_SECRET",
    )  # fmt: skip
    assert all(v.meaning and "\n" not in v.meaning for v in variables.VARIABLES)
