"""`b24-mcp check` in this process: its verdicts and exit codes, and that it never prints a secret.

The stdio round trip to a spawned server is replaced by the same server in memory (the SDK's Client takes
either), so every case runs check's own code; the real spawn is proven once in tests/e2e/test_check.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import trustme
from mcp import StdioServerParameters
from mcp.client import stdio

from b24_mcp import check, cli
from b24_mcp import settings as config
from b24_mcp.check import Report
from b24_mcp.errors import ConfigError, portal_error
from b24_mcp.server import build_server
from tests.portal import OAuthSettings, StandInPortal
from tests.readme import readme_block
from tests.values import CODE, HOST, TOKEN, oauth_vars, webhook_vars


@pytest.fixture(autouse=True)
def in_memory_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """check's stdio_client(params) gives the server `params` describes, built in this process."""

    def server(params: StdioServerParameters, errlog: Any = None) -> Any:
        try:
            settings: config.Settings | ConfigError = config.load(params.env or {}, demo="--demo" in params.args)
        except ConfigError as err:
            settings = err
        return build_server(settings)

    monkeypatch.setattr(stdio, "stdio_client", server)


def run(*, demo: bool = False, dialog: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = check.run(["--demo"] if demo else [], demo=demo, dialog=dialog, env=env or {}, out=out)
    return code, out.getvalue()


def test_demo_check_passes() -> None:
    code, out = run(demo=True)
    assert code == 0, out
    assert "✓ get_chat(chat5): DEMO DATA" in out and "Verdict: all good" in out


def test_refused_chat_is_a_verdict_naming_the_fix(https_portal: StandInPortal) -> None:
    code, out = run(dialog="chat7", env=webhook_vars(https_portal.webhook_url))
    assert code == 1
    assert "ACCESS_DENIED" in out and "add the bot to that chat in Bitrix24" in out  # the hint, said once
    assert CODE not in out and TOKEN not in out


def test_without_dialog_it_still_proves_the_server_starts(https_portal: StandInPortal) -> None:
    code, out = run(env=webhook_vars(https_portal.webhook_url))
    assert code == 0, out
    assert "lists get_chat" in out and "--dialog" in out
    assert https_portal.count() == 0


def test_untrusted_certificate_points_at_ssl_cert_file(
    https_portal: StandInPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    code, out = run(dialog="chat5", env=webhook_vars(https_portal.webhook_url))
    assert code == 1 and "✗ portal:" in out and "SSL_CERT_FILE" in out
    assert "Verdict: the portal cannot be reached" in out


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    code, out = run(env={"B24_WEBHOOK_URL": f"http://portal.example.com/rest/1/{CODE}/"})
    assert code == 2
    assert "B24_WEBHOOK_URL must use https://" in out
    assert CODE not in out and "Traceback" not in out


def test_malformed_dialog_is_explained_not_blamed_on_the_portal() -> None:
    code, out = run(demo=True, dialog="chat 5")
    assert code == 1
    assert "dialogId 'chat 5' is not valid" in out and "Remove the spaces" in out
    assert "Verdict: get_chat failed" in out


# -- the credentials and the bot are proven without --dialog -------------------------------------------------------


def test_without_dialog_it_proves_the_credentials_and_the_bot(https_portal: StandInPortal) -> None:
    code, out = run(env=webhook_vars(https_portal.webhook_url))
    assert code == 0, out
    assert "✓ credentials: 127.0.0.1" in out and "its permissions include imbot" in out
    assert "✓ bot 456 (support_bot): type personal; it can read the messages" in out
    assert [r.path.rsplit("/", 1)[-1] for r in https_portal.requests if "/rest/" in r.path] == [
        "scope", "imbot.v2.Bot.get",
    ]  # fmt: skip


def test_a_wrong_webhook_code_fails_the_credentials(https_portal: StandInPortal) -> None:
    wrong = https_portal.webhook_url.replace(CODE, "wrongCODE999")
    code, out = run(env=webhook_vars(wrong))
    assert code == 1
    assert "✗ credentials: Bitrix24 error NO_AUTH_FOUND" in out
    assert "Copy the inbound webhook URL again" in out  # the code's one hint (errors.HINTS), said once
    assert "Verdict: the portal refused the credentials; the message above says what to fix." in out
    assert "wrongCODE999" not in out and TOKEN not in out


def test_a_wrong_bot_token_fails_the_bot(https_portal: StandInPortal) -> None:
    code, out = run(env=webhook_vars(https_portal.webhook_url, B24_BOT_TOKEN="notTheBotsToken"))
    assert code == 1
    assert "✗ bot 456: Bitrix24 answered in the brief format it gives to those who do not own the bot" in out
    assert "B24_BOT_TOKEN is not this bot's token" in out and "notTheBotsToken" not in out


def test_a_webhook_without_imbot_says_which_permission_to_tick(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN, scopes=("im", "user")) as portal:
        monkeypatch.setenv("SSL_CERT_FILE", str(portal.ca_pem_path))
        code, out = run(env=webhook_vars(portal.webhook_url))
    assert code == 1
    assert "✗ credentials: the webhook works but lacks the imbot permission (it has: im, user)" in out
    assert "Inbound webhook, edit this webhook, tick imbot and save" in out


def test_a_bot_that_may_not_read_messages_is_a_warning(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN, bot_type="bot") as portal:
        monkeypatch.setenv("SSL_CERT_FILE", str(portal.ca_pem_path))
        code, out = run(env=webhook_vars(portal.webhook_url))
    assert code == 0, out
    assert "! bot 456 (support_bot): type bot; get_chat and get_chat_members work, but reading messages" in out
    assert "needs a personal or supervisor bot" in out


def test_without_a_bot_id_the_bot_is_not_checked_but_said_so(https_portal: StandInPortal) -> None:
    code, out = run(env={"B24_WEBHOOK_URL": https_portal.webhook_url})
    assert code == 0, out
    assert "! bot: B24_BOT_ID is not set, so every tool call must pass botId" in out
    assert https_portal.count("imbot.v2.Bot.get") == 0


def test_oauth_check_says_where_the_token_file_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = OAuthSettings()
    with StandInPortal(oauth=app) as portal:
        env = oauth_vars(portal.base_url)
        monkeypatch.setattr("platformdirs.user_data_path", lambda name: tmp_path / "data" / name)
        code, out = run(env=env)
        assert code == 0, out
        default = next(line for line in out.splitlines() if "B24_TOKEN_FILE" in line)
        assert str(tmp_path / "data" / "b24-mcp" / "oauth-127.0.0.1_") in default
        assert default.endswith("(default; not created yet: written at the first token refresh)")
        assert "✓ credentials: 127.0.0.1" in out and "accepted the application's token" in out
        chosen = tmp_path / "tokens.json"
        chosen.write_text("{}")
        code, out = run(env={**env, "B24_TOKEN_FILE": str(chosen)})
    assert f"B24_TOKEN_FILE     {chosen} (exists)" in out
    for secret in (app.access_token, app.refresh_token, app.client_secret):
        assert secret not in out


def test_check_refuses_a_token_file_in_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    chosen = tmp_path / "tokens.json"
    chosen.write_text("{}")
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)  # root ignores modes: as EROFS
    code, out = run(env=oauth_vars("https://acme.bitrix24.com", B24_TOKEN_FILE=str(chosen)))
    assert code == 2, out
    assert f"in a directory this user may not write to ({tmp_path})" in out


# -- what it prints about the settings ---------------------------------------------------------------------------


def test_unknown_variables_are_named_with_a_suggestion_and_never_shown(https_portal: StandInPortal) -> None:
    env = webhook_vars(
        https_portal.webhook_url, B24_BOT_TOKN=TOKEN, B24_OLD_WEBHOOK_URL=f"https://x.test/rest/1/{CODE}/"
    )
    code, out = run(env=env)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:2] == [
        "! B24_BOT_TOKN is not a b24-mcp variable and is ignored: did you mean B24_BOT_TOKEN?",
        "! B24_OLD_WEBHOOK_URL is not a b24-mcp variable and is ignored: did you mean B24_WEBHOOK_URL?",
    ]
    assert out.count(TOKEN) == 0 and CODE not in out


def test_every_bad_setting_is_a_line_and_exit_2() -> None:
    code, out = run(
        env={"B24_WEBHOOK_URL": "'https://acme.bitrix24.com/rest/1/x/'", "B24_BOT_ID": "x", "B24_TIMEOUT": "0"}
    )
    assert code == 2
    assert [line.split(":", 2)[1].strip().split(" ")[0] for line in out.splitlines() if line.startswith("✗")] == [
        "B24_WEBHOOK_URL", "B24_BOT_ID", "B24_TIMEOUT='0'",
    ]  # fmt: skip
    assert out.splitlines()[-1].startswith("→ Verdict: fix the settings above")


def test_placeholders_from_the_example_config_are_refused_as_examples() -> None:
    code, out = run(
        env={
            "B24_WEBHOOK_URL": "https://your-portal.bitrix24.com/rest/1/your_webhook_code/",
            "B24_BOT_ID": "456",
            "B24_BOT_TOKEN": "your_bot_token",
        }
    )
    assert code == 2
    assert "✗ configuration: B24_WEBHOOK_URL still holds an example value ('your-portal')" in out
    assert "✗ configuration: B24_BOT_TOKEN still holds an example value ('your_bot_token')" in out


def test_secret_lengths_read_as_english() -> None:
    assert check.set_secret("x") == "set (1 character)"
    assert check.set_secret("xy") == "set (2 characters)"


# -- the demo's words ----------------------------------------------------------------------------------------------


def test_demo_access_denied_names_the_fix_and_no_plan() -> None:
    code, out = run(demo=True, dialog="chat7")
    assert code == 1
    assert "ACCESS_DENIED" in out and "The bot is not a participant of chat7" in out
    assert "plan" not in out.lower()


def test_access_denied_for_a_plan_without_rest_says_so() -> None:
    err = portal_error(
        "ACCESS_DENIED", "REST is available only on commercial plans", status=403, host=HOST, call={"dialogId": "chat5"}
    )
    assert "this portal's plan does not include the REST API" in str(err)
    assert "participant" not in str(err)


def test_a_ca_file_that_does_not_parse_is_a_configuration_problem(
    https_portal: StandInPortal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(broken))  # what the check's own HTTP client reads
    code, out = run(env=webhook_vars(https_portal.webhook_url, SSL_CERT_FILE=str(broken), SSL_CERT_DIR="/etc"))
    assert code == 2
    assert f"✗ configuration: SSL_CERT_FILE={str(broken)!r} could not be loaded as a CA bundle" in out


def test_ssl_cert_dir_is_shown_as_unused_beside_ssl_cert_file(https_portal: StandInPortal) -> None:
    pem = str(https_portal.ca_pem_path)
    code, out = run(env=webhook_vars(https_portal.webhook_url, SSL_CERT_FILE=pem, SSL_CERT_DIR=str(Path(pem).parent)))
    assert code == 0, out
    assert f"SSL_CERT_DIR     {Path(pem).parent} (not used: SSL_CERT_FILE is set)" in out


def test_the_readme_check_output_is_a_real_one(
    ca: trustme.CA, no_b24_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `check --dialog chat7` block, against the stand-in portal: equal but for port, paths and times
    (the server in memory prints what the spawned one does: the quick start's test shows that with a real spawn);
    and neither the webhook code nor the bot token anywhere in what check printed."""
    monkeypatch = no_b24_env
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    shown = readme_block("4. **Check the setup**")
    token = re.search(r"B24_BOT_TOKEN +set \((\d+) characters\)", shown)
    assert token is not None
    secret_token = (TOKEN * 3)[: int(token[1])]  # the suite's secret, at the README's length
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=secret_token) as portal:
        monkeypatch.setenv("SSL_CERT_FILE", str(portal.ca_pem_path))
        for name, value in webhook_vars(portal.webhook_url, B24_BOT_TOKEN=portal.bot_token).items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as info:
            cli.main(["check", "--dialog", "chat7"])
    out, err = capsys.readouterr()
    assert info.value.code == 1
    assert CODE not in out + err and secret_token not in out + err
    assert portal.count() == 1  # get_chat reached the portal through the server (and was refused)

    def normal(text: str) -> str:
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
        text = re.sub(r"(SSL_CERT_FILE +)\S+", r"\1CA", text)
        return re.sub(r"in \d+ ms", "in N ms", text)

    assert normal(out) == normal(shown)


def test_a_report_line_cannot_drive_the_terminal() -> None:
    out = io.StringIO()
    Report(out).line("✓", "name\x1b[2J\x1b]0;title\x07 \x9b2Jok\rfake ✓\nnext\x85line")
    assert out.getvalue() == "✓ name ok fake ✓\nnext line\n"


def test_redis_is_proven_with_its_own_verdict(redis_url: str) -> None:
    """A bad B24_REDIS_URL was blamed on the portal's credentials (the first call through Redis failed there)."""
    code, out = run(demo=True, env={"B24_REDIS_URL": redis_url})
    assert code == 0, out
    assert re.search(r"^✓ Redis: 127\.0\.0\.1:\d+/0 answered PING in \d+ ms$", out, re.MULTILINE), out
    wrong = redis_url.replace("redis://", "redis://nobody:wrongPASS@")  # refused as a wrong password (WRONGPASS)
    code, out = run(demo=True, env={"B24_REDIS_URL": wrong})
    assert code == 1, out
    assert "✗ Redis: Redis at 127.0.0.1:" in out and "B24_REDIS_URL" in out
    assert out.splitlines()[-1].startswith("→ Verdict: Redis cannot be used")
    assert "credentials" not in out and "wrongPASS" not in out
