"""The Bitrix24 REST client and what it stands on: one bounded exchange, pacing, auth and the OAuth pair's stores,
the answers' models. It knows nothing of MCP: the tools above it import it, never the other way."""
