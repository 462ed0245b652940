"""Durable files, for every package that writes one it must not lose (signed checkpoints, archives, keys)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_directory"]


def fsync_directory(directory: Path) -> None:
    """Make a new or renamed entry of ``directory`` durable: on POSIX a file's own fsync does not cover its
    name, the directory's fsync does (a power cut could otherwise lose the entry, or keep it empty)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
