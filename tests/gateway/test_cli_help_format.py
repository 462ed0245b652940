"""The help layout: Chinese wrapped by terminal columns (two per character), never a closing mark at the
start of a line, English words kept whole, and each help text Chinese first with English after."""

from __future__ import annotations

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from gateway.commands._help import (
    HelpTyper,
    bilingual,
    fill,
    short_help,
    split_bilingual,
    width,
    wrap,
)

runner = CliRunner()


def test_a_chinese_character_takes_two_columns() -> None:
    assert width("审计") == 4
    assert width("（例如 DIBAO_REVIEW）") == 2 + 4 + 1 + 12 + 2


def test_chinese_wraps_by_columns_and_breaks_between_characters() -> None:
    text = "校验整个审计日志（哈希链、Merkle 根、最新的签名检查点）。日志被破坏时退出码为 1。"
    lines = wrap(text, 30)
    assert all(width(line) <= 30 for line in lines), lines
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert len(lines) > 2


@pytest.mark.parametrize("mark", ["，", "。", "）", "、", "；", "："])
def test_no_line_starts_with_a_closing_mark(mark: str) -> None:
    # Twelve characters then the mark: at 24 columns the mark would fall on the next line by itself.
    text = "一二三四五六七八九十一二" + mark + "三四五"
    for line in wrap(text, 24)[1:]:
        assert line[0] != mark, wrap(text, 24)


def test_no_line_ends_with_an_opening_mark() -> None:
    lines = wrap("一二三四五六七八九十一（二三四五）", 24)
    assert not any(line.endswith("（") for line in lines), lines


def test_an_english_word_or_identifier_is_never_split() -> None:
    text = "请设置 GRASSROOTS_CHECKPOINT_DIR 后重新运行，或运行 grassroots audit checkpoint 签发一个。"
    lines = wrap(text, 30)
    assert all(width(line) <= 30 for line in lines), lines
    assert any("GRASSROOTS_CHECKPOINT_DIR" in line for line in lines)
    assert any("checkpoint" in line.split() for line in lines)


def test_lines_of_one_chinese_paragraph_join_without_a_space_and_english_with_one() -> None:
    assert fill("第一行\n第二行", 80) == ["第一行第二行"]
    assert fill("first line\nsecond line", 80) == ["first line second line"]
    assert fill("中文\n\nEnglish", 80) == ["中文", "English"]


@given(st.text(alphabet="审计日志授权场景脱敏，。（）、 abcXYZ_-", max_size=200), st.integers(10, 60))
def test_wrapping_never_passes_the_width_and_loses_nothing(text: str, columns: int) -> None:
    lines = wrap(text, columns)
    assert all(width(line) <= columns for line in lines)
    assert "".join("".join(lines).split()) == "".join(text.split())


def test_a_help_text_is_chinese_then_english() -> None:
    text = bilingual("查看一项授权。\n\n第二段。", "One grant.\n\nSecond paragraph.")
    assert split_bilingual(text) == ("查看一项授权。\n\n第二段。", "One grant.\n\nSecond paragraph.")


@pytest.mark.parametrize(
    ("zh", "en"),
    [
        ("One grant.", "One grant."),  # no Chinese
        ("查看一项授权。", "One grant (授权)."),  # Chinese in the English would move the boundary
        ("查看一项授权。", ""),  # no English
    ],
)
def test_a_help_text_without_chinese_or_with_chinese_in_its_english_is_refused(zh: str, en: str) -> None:
    with pytest.raises(ValueError, match="help"):
        bilingual(zh, en)


def test_a_command_lists_with_its_first_chinese_sentence_and_its_english_short_help() -> None:
    text = bilingual("撤销已批准的授权。每个网关进程下次请求起即拒绝。", "Revoke an approved grant; more.")
    assert short_help(text, 60) == "撤销已批准的授权\n\nRevoke an approved grant; more."
    # Too wide for the column: cut, and said to be cut.
    assert short_help(text, 10) == "撤销已批…\n\nRevoke..."


def test_a_command_without_chinese_is_refused_when_declared() -> None:
    app = HelpTyper()
    with pytest.raises(TypeError, match="Chinese"):

        @app.command("plain")
        def plain() -> None:
            """English only."""


def test_a_command_registered_again_keeps_its_chinese() -> None:
    first, second = HelpTyper(), HelpTyper()

    @first.command("one", zh="第一个命令。")
    def one() -> None:
        """The first command."""

    @first.command("two", zh="第二个命令。")
    def two() -> None:
        """The second command."""

    second.command("again")(one)
    parent = HelpTyper()
    parent.add_typer(second, name="group", help=bilingual("一组命令。", "A group."))
    shown = runner.invoke(parent, ["group", "again", "--help"]).stdout
    assert "第一个命令。" in shown and "The first command." in shown
    assert shown.index("第一个命令。") < shown.index("The first command.")


def test_headings_and_the_help_option_are_bilingual() -> None:
    app = HelpTyper()

    @app.command("one", zh="第一个命令。")
    def one(flag: bool = typer.Option(False, "--flag", help=bilingual("开关", "a switch"))) -> None:
        """The first command."""

    @app.command("two", zh="第二个命令。")
    def two() -> None:
        """The second command."""

    shown = runner.invoke(app, ["one", "--help"]).stdout
    assert "选项 / Options:" in shown
    assert "显示本帮助并退出。" in shown and "Show this message and exit." in shown
    listed = runner.invoke(app, ["--help"]).stdout
    assert "命令 / Commands:" in listed
    assert "  one  第一个命令\n       The first command." in listed
