"""The Chinese-font check before a PDF print asks fontconfig once, not on every PDF.

Before, every PDF request ran ``fc-list :lang=zh family`` (a process) before printing. Now a font found is
remembered for ``FONT_CHECK_TTL_S`` (then asked again: a font removed is noticed), and no font found is
never remembered: the request after an operator installs one prints. Checked with a stand-in ``fc-list``
on ``PATH`` that counts its runs, and a clock the test turns.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.routes import supervision
from gateway.routes.supervision import FONT_CHECK_TTL_S, FontCheck


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fontconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on ``PATH`` with an ``fc-list`` that logs each run to ``runs`` and lists ``fonts``."""
    script = tmp_path / "fc-list"
    script.write_text(
        f'#!/bin/sh\necho run >> "{tmp_path}/runs"\n'
        f'[ -f "{tmp_path}/fonts" ] && cat "{tmp_path}/fonts"\nexit 0\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path


def runs(fontconfig: Path) -> int:
    log = fontconfig / "runs"
    return len(log.read_text().splitlines()) if log.exists() else 0


def install_font(fontconfig: Path) -> None:
    (fontconfig / "fonts").write_text("Noto Sans CJK SC\n")


def test_a_font_found_is_not_asked_for_again_on_every_pdf(fontconfig: Path) -> None:
    install_font(fontconfig)
    clock = Clock()
    check = FontCheck(clock)
    assert [check() for _ in range(5)] == [True] * 5
    assert runs(fontconfig) == 1


def test_a_font_found_is_asked_for_again_after_a_while(fontconfig: Path) -> None:
    install_font(fontconfig)
    clock = Clock()
    check = FontCheck(clock)
    assert check()
    clock.now += FONT_CHECK_TTL_S - 1
    assert check()
    assert runs(fontconfig) == 1
    (fontconfig / "fonts").unlink()  # removed meanwhile
    clock.now += 2
    assert not check()
    assert runs(fontconfig) == 2


def test_no_font_is_never_remembered_so_one_installed_later_is_seen(fontconfig: Path) -> None:
    check = FontCheck(Clock())
    assert not check()
    assert not check()
    assert runs(fontconfig) == 2
    install_font(fontconfig)
    assert check()
    assert check()
    assert runs(fontconfig) == 3


def test_the_pdf_path_uses_one_remembering_check() -> None:
    assert isinstance(supervision.chinese_font_installed, FontCheck)


def test_no_fc_list_counts_as_no_font(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not FontCheck(Clock())()
