"""(placeholder: filled in by the issue that owns this area)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
