"""b24-mcp: an MCP server that lets AI agents read Bitrix24 chats."""
