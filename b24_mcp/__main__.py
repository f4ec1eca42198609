"""`python -m b24_mcp`, the same as the `b24-mcp` command; also runnable as a file (an MCP Bundle's entry_point,
`uv run b24_mcp/__main__.py`), where the package is imported from the directory above this one."""

if __package__:
    from .cli import main
else:  # run as a file: this directory must not shadow modules (settings, logs…); its parent holds the package
    import sys
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from b24_mcp.cli import main

main()
