"""A note about a non-JSON answer (a report saved to a file), carried in two response headers.

A JSON answer says what a person should know in its body (``note``, ``note_en``); a CSV, HTML or PDF file
has the note inside it, where whoever saves the file sees it only on opening it. The same note also goes
in ``Grassroots-Note`` and ``Grassroots-Note-En``, percent-encoded UTF-8 (a header is Latin-1 on the wire;
RFC 8187's idea without its charset prefix), and the CLI prints it beside "written …".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, unquote

NOTE_HEADER: Final = "Grassroots-Note"
NOTE_HEADER_EN: Final = "Grassroots-Note-En"


def note_headers(note_zh: str, note_en: str) -> dict[str, str]:
    """The headers carrying a note, Chinese and English."""
    return {NOTE_HEADER: quote(note_zh, safe=""), NOTE_HEADER_EN: quote(note_en, safe="")}


def read_note(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The note an answer's headers carry (Chinese, English), or ``None``."""
    zh, en = headers.get(NOTE_HEADER), headers.get(NOTE_HEADER_EN)
    if zh is None and en is None:
        return None
    return unquote(zh or ""), unquote(en or "")
