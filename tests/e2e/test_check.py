"""`b24-mcp check` as a user runs it, with the real stdio round trip to a spawned server: the one case that
needs the spawn. Its other verdicts are shown in this process, with the server in memory (tests/test_check.py).
"""

from __future__ import annotations

import os

import pytest

from b24_mcp import cli
from tests.portal import StandInPortal
from tests.values import CODE, MASKED_HOOK, TOKEN, webhook_vars

pytestmark = pytest.mark.e2e


def test_webhook_check_passes_and_masks_secrets(
    https_portal: StandInPortal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [k for k in os.environ if k.startswith("B24_")]:
        monkeypatch.delenv(name)
    for name, value in webhook_vars(https_portal.webhook_url).items():  # SSL_CERT_FILE is set by the fixture
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        cli.main(["check", "--dialog", "chat5"])  # in this process; it spawns the server as a host would
    out, err = capsys.readouterr()
    assert info.value.code == 0, out + err
    assert "webhook mode" in out
    assert MASKED_HOOK in out and f"set ({len(TOKEN)} characters)" in out
    assert "✓ portal: 127.0.0.1" in out and "Support Chat (chat5)" in out
    assert CODE not in out + err and TOKEN not in out + err
    assert https_portal.count() == 2  # get_chat, and get_messages reading the chat first, reached the portal
