"""The command line, in this process: options are checked by argparse before anything heavy is imported."""

from __future__ import annotations

import pytest

from b24_mcp import cli


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_bad_port_is_one_line_naming_the_option(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--demo", "--transport", "streamable-http", "--port", port])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == ""
    assert "--port" in err and "1 to 65535" in err and "Traceback" not in err
