"""`b24-mcp check --demo` as the README's quick start runs it, with the real stdio round trip to a spawned server:
what it prints must be the README's block. Its other verdicts, and the README's other check output, are shown in
this process with the server in memory (tests/test_check.py).
"""

from __future__ import annotations

import pytest

from b24_mcp import cli
from tests.readme import readme_block

pytestmark = pytest.mark.e2e


def test_the_quick_start_prints_what_the_readme_shows(no_b24_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--demo", "check"])  # --demo before the command, as well as after it
    out, err = capsys.readouterr()
    assert info.value.code == 0, out + err
    assert out == readme_block("## Quick start")
