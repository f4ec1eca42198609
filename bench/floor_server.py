"""The SDK floor: the smallest useful MCPServer, one echo tool, on the same SDK as b24-mcp.

bench.py measures b24-mcp against this in the same run, so the figures are ratios to what the SDK alone
costs on this machine at this moment, not absolute times. The tool is `async def`, like b24-mcp's: the SDK
runs a plain `def` tool in a worker thread, and that hop would flatter b24-mcp's overhead.
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("floor")


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    server.run()
