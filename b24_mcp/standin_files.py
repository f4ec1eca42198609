"""The stand-in portal's files: a text file, an image and a PDF, made in code, and their one-time download links.

`imbot.v2.File.download` hands out a link (`link`) whose token works once, as a portal's does; the download
endpoint (`serve`, at `/rest/download.json?token=…`) answers it with the bytes and the headers a portal sends
(Content-Type, Content-Disposition with the name). The files are built here rather than shipped as binaries, so
what they hold is readable: an 8×8 PNG and a two-page PDF with a line of text on each page.
"""

from __future__ import annotations

import secrets
import struct
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

DOWNLOAD_PATH = "/rest/download.json"  # where the docs' example downloadUrl points


@dataclass(frozen=True)
class StoredFile:
    """A file on the portal's Drive, attached to a message of chat `chat_id`."""

    id: int
    chat_id: int
    name: str
    content_type: str
    data: bytes


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (47, 198, 246)) -> bytes:
    """A valid PNG of one colour (Bitrix24's blue by default)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF: one line of Helvetica text on each page, with a correct cross-reference table."""
    count = len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count))
        + b"] /Count %d >>" % count,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, line in enumerate(pages):
        text = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        stream = b"BT /F1 12 Tf 24 100 Td (" + text + b") Tj ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 420 144] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


RELEASE_NOTES = """# Release 4.2

- CRM export to Excel: permissions per role (ticket #4512)
- Faster chat search
- Known issue: the mobile app shows old avatars until restarted
"""

FILES: dict[int, StoredFile] = {
    f.id: f
    for f in (
        StoredFile(138, 12, "release-notes.md", "text/markdown", RELEASE_NOTES.encode()),
        StoredFile(140, 12, "staging.png", "image/png", png()),
        StoredFile(
            142,
            12,
            "release-checklist.pdf",
            "application/pdf",
            pdf(["Release 4.2 checklist: staging build by Thursday noon.", "Page 2: release on Tuesday at 10:00."]),
        ),
        StoredFile(150, 7, "board-minutes.txt", "text/plain", b"Board minutes: not for the bot.\n"),
    )
}

Served = tuple[int, dict[str, str], bytes]
"""(HTTP status, headers, body) of a download."""


class FileStore:
    """The portal's files and the one-time tokens of the links handed out for them (safe from many threads)."""

    def __init__(self, portal_url: str, files: Mapping[int, StoredFile] | None = None) -> None:
        self.portal_url = portal_url.rstrip("/")
        self.files = dict(FILES if files is None else files)
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}  # token -> file id, until used
        self.downloads = 0  # links used (what the tests count)

    def link(self, file_id: int) -> str:
        """A one-time download URL for the file, as File.download answers it."""
        token = "imbot|" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = file_id
        return f"{self.portal_url}{DOWNLOAD_PATH}?token={quote(token, safe='')}"

    def serve(self, query: Mapping[str, str]) -> Served:
        """The download endpoint: the file for a live token (which dies with this use), else 404."""
        with self._lock:
            file_id = self._tokens.pop(query.get("token", ""), None)
            if file_id is not None:
                self.downloads += 1
        stored = self.files.get(file_id) if file_id is not None else None
        if stored is None:
            return 404, {"Content-Type": "application/json"}, b'{"error":"NOT_FOUND","error_description":"Not found"}'
        headers = {
            "Content-Type": stored.content_type,
            "Content-Disposition": f"attachment; filename=\"{stored.name}\"; filename*=utf-8''{quote(stored.name)}",
        }
        return 200, headers, stored.data
