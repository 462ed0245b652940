"""How a key id is written (k1, 2026-q3): in every audit ref as ``<id>:<mac>``, and checked by the
settings before any key is read."""

from __future__ import annotations

import re
from typing import Final

KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,16}")
#: The shortest audit ref key (HMAC-SHA256) accepted, in bytes.
MIN_KEY_BYTES: Final = 16
