"""`b24-mcp check`, run as a user would: its verdicts, exit codes, and that it never prints a secret."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e import CODE, ROOT, TOKEN, server_env, webhook_env
from tests.portal import StandInPortal


def check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b24_mcp", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=server_env(**env),
    )


def test_demo_check_passes() -> None:
    done = check("--demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ get_chat(chat5): DEMO DATA" in done.stdout
    assert "Verdict: all good" in done.stdout


def test_webhook_check_passes_and_masks_secrets(https_portal: StandInPortal) -> None:
    done = check("--dialog", "chat5", **webhook_env(https_portal))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "webhook mode" in done.stdout
    assert "/rest/1/***/" in done.stdout and f"set ({len(TOKEN)} characters)" in done.stdout
    assert "✓ portal: 127.0.0.1" in done.stdout and "Support Chat (chat5)" in done.stdout
    assert CODE not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
    assert https_portal.count() == 1  # the real round trip reached the portal


def test_refused_chat_is_a_verdict_naming_the_fix(https_portal: StandInPortal) -> None:
    done = check("--dialog", "chat7", **webhook_env(https_portal))
    assert done.returncode == 1
    assert "ACCESS_DENIED" in done.stdout and "Add the bot to that chat" in done.stdout


def test_without_dialog_it_still_proves_the_server_starts(https_portal: StandInPortal) -> None:
    done = check(**webhook_env(https_portal))
    assert done.returncode == 0, done.stdout
    assert "lists get_chat" in done.stdout and "--dialog" in done.stdout
    assert https_portal.count() == 0


def test_untrusted_certificate_points_at_ssl_cert_file(https_portal: StandInPortal) -> None:
    env = webhook_env(https_portal)
    del env["SSL_CERT_FILE"]
    done = check("--dialog", "chat5", **env)
    assert done.returncode == 1 and "SSL_CERT_FILE" in done.stdout


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    done = check(B24_WEBHOOK_URL=f"http://portal.example.com/rest/1/{CODE}/")
    assert done.returncode == 2
    assert "B24_WEBHOOK_URL must use https://" in done.stdout
    assert CODE not in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_malformed_dialog_is_explained_not_blamed_on_the_portal() -> None:
    done = check("--demo", "--dialog", "chat 5")
    assert done.returncode == 1
    assert "dialogId 'chat 5' is not valid" in done.stdout and "Remove the spaces" in done.stdout
    assert "Verdict: get_chat failed" in done.stdout
