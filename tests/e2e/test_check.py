"""`b24-mcp check` as a user runs it, with the real stdio round trip to a spawned server: the cases that need
the spawn, and the README's outputs, which must be what a real run prints. Its other verdicts are shown in this
process, with the server in memory (tests/test_check.py).
"""

from __future__ import annotations

import os
import re

import pytest
import trustme

from b24_mcp import cli
from tests.portal import StandInPortal
from tests.values import CODE, ROOT, TOKEN, webhook_vars

pytestmark = pytest.mark.e2e


def readme_block(after: str, index: int = 0) -> str:
    text = (ROOT / "README.md").read_text().split(after, 1)[1]
    blocks: list[str] = re.findall(r"```text\n(.*?)```", text, re.DOTALL)
    return blocks[index]


def clean_b24_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("B24_")]:
        monkeypatch.delenv(name)


def test_the_quick_start_prints_what_the_readme_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_b24_env(monkeypatch)
    with pytest.raises(SystemExit) as info:
        cli.main(["--demo", "check"])  # --demo before the command, as well as after it
    out, err = capsys.readouterr()
    assert info.value.code == 0, out + err
    assert out == readme_block("## Quick start")


def test_the_readme_check_output_is_a_real_one(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `check --dialog chat7` block, against the stand-in portal: equal but for port, paths and times;
    and neither the webhook code nor the bot token anywhere in what check or the spawned server printed."""
    clean_b24_env(monkeypatch)
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
    assert portal.count() == 1  # get_chat reached the portal through the spawned server (and was refused)

    def normal(text: str) -> str:
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
        text = re.sub(r"(SSL_CERT_FILE +)\S+", r"\1CA", text)
        return re.sub(r"in \d+ ms", "in N ms", text)

    assert normal(out) == normal(shown)
