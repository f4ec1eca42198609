"""The SDK floor: the smallest useful MCPServer, one echo tool, on the same SDK as b24-mcp.

bench.py measures b24-mcp against this in the same run, so the figures are ratios to what the SDK alone
costs on this machine at this moment, not absolute times.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("floor")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    server.run()
