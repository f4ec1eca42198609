"""`python -m b24_mcp`, the same as the `b24-mcp` command."""

from .cli import main

main()
