"""What hosts show of every b24-mcp tool and resource: the icon, the read-only annotations, the chat URI scheme.

Apart from the tools' machinery so that the server can name them at start-up without loading it.
"""

from __future__ import annotations

import base64

from mcp_types import Icon, ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
CHAT_URI = "bitrix24://chat/{dialogId}"

# What hosts show next to the server, its tools and its resources: a chat bubble on Bitrix24's blue, as a data:
# URI so that no host fetches anything to draw it (manifest.json's icon.png is the same picture).
ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<rect width="64" height="64" rx="14" fill="#2fc6f6"/>'
    '<path d="M16 16h32a5 5 0 0 1 5 5v17a5 5 0 0 1-5 5H31l-11 9v-9h-4a5 5 0 0 1-5-5V21a5 5 0 0 1 5-5z" fill="#fff"/>'
    '<path d="M21 26h22M21 33h14" stroke="#2fc6f6" stroke-width="4" stroke-linecap="round"/></svg>'
)
ICONS = [
    Icon(
        src="data:image/svg+xml;base64," + base64.b64encode(ICON_SVG.encode()).decode(),
        mime_type="image/svg+xml",
        sizes=["any"],
    )
]
