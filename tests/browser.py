"""The real browser the page and PDF tests use: Debian's ``chromium`` (`make browser` installs it with a
Chinese font). Outside CI a test that needs it skips with a reason when none can be found; in CI it fails."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def pdf_pages_text(pdf: bytes) -> list[str]:
    """Each page's text, line by line as laid out (a table row is one line), as poppler's ``pdftotext``
    reads it (Debian's ``poppler-utils``, which `make browser` installs). Poppler folds the CJK radical code
    points that Chromium's embedded Noto CJK glyphs map to back to the characters written (页, not ⻚);
    a pure-Python reader (pypdf) hands back the radicals, and Chinese text would not compare equal."""
    binary = shutil.which("pdftotext")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("pdftotext is required in CI (apt-get install -y poppler-utils)")
        pytest.skip("pdftotext is not installed (apt-get install -y poppler-utils)")
    command = [binary, "-layout", "-enc", "UTF-8", "-", "-"]
    done = subprocess.run(command, input=pdf, capture_output=True, check=True)
    return done.stdout.decode("utf-8").split("\f")[:-1]
