"""A request the schema refuses says, for each parameter it names, what is wrong and what it takes.

"请求参数有误：disposition。" left a supervisor guessing; the schema knows the answer (the allowed values,
the length, the bound, the format), so the message carries it, Chinese first, and still never the value
sent nor a dict key or list index inside it. Table: (body or query sent, parameter named, words in the
Chinese message).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.app import install_error_handlers
from gateway.settings import configuration_error
from gateway.time_inputs import Month
from gateway.validation_hints import validation_hint

PHONE = "13812345678"
CJK = re.compile(r"[\u4e00-\u9fff]")


class Disposition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disposition: Literal["substantiated", "unsubstantiated", "referred"]
    note: str = Field(min_length=1, max_length=10)
    id_number: str = Field("110105194912310021", min_length=15)
    due_at: AwareDatetime | None = None
    datasets: dict[str, list[str]] | None = None


app = FastAPI()
install_error_handlers(app)


@app.post("/case")
async def case(body: Disposition) -> dict[str, Any]:
    return {}


@app.get("/report")
async def report(
    month: Annotated[Month | None, Query()] = None,
    status: Annotated[str, Query(pattern="^(open|closed|all)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    kind: Annotated[list[Literal["draft", "approved"]] | None, Query()] = None,
) -> dict[str, Any]:
    return {}


client = TestClient(app)
GOOD = {"disposition": "referred", "note": "移送"}

CASES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("a value not in the list", {**GOOD, "disposition": PHONE}, "disposition", ("substantiated", "referred")),
    ("an empty note", {**GOOD, "note": ""}, "note", ("不能为空",)),
    ("a note too long", {**GOOD, "note": "很长" * 10}, "note", ("最多 10 个字符",)),
    ("a missing field", {"note": "移送"}, "disposition", ("必须提供",)),
    ("a short number", {**GOOD, "id_number": "1234"}, "id_number", ("至少 15 个字符",)),
    ("a time without offset", {**GOOD, "due_at": "2026-12-01T08:00:00"}, "due_at", ("带时区", "+08:00")),
    ("a key the body lacks", {**GOOD, PHONE: "x"}, "body", ("没有的字段", "disposition、note")),
]


@pytest.mark.parametrize(("case_name", "body", "named", "words"), CASES, ids=[c[0] for c in CASES])
def test_the_message_says_what_the_parameter_takes(
    case_name: str, body: dict[str, Any], named: str, words: tuple[str, ...]
) -> None:
    resp = client.post("/case", json=body)
    assert resp.status_code == 422, resp.text
    answer = resp.json()
    assert answer["error"] == "invalid_request" and answer["fields"] == [named]
    assert answer["message"].startswith(f"请求参数有误：{named}（")
    for word in words:
        assert word in answer["message"], answer["message"]
    assert PHONE not in resp.text and "很长很长" not in resp.text


@pytest.mark.parametrize(
    ("params", "named", "words"),
    [
        ({"month": "2026-13"}, "month", ("须为存在的月份", "2026-1 或 2026年11月")),
        ({"status": PHONE}, "status", ("open、closed、all",)),
        ({"limit": "0"}, "limit", ("不能小于 1",)),
        ({"limit": PHONE + "x"}, "limit", ("须为整数",)),
        # A repeated parameter (`admission list --status aproved`): each value is the parameter as typed.
        ([("kind", "draft"), ("kind", PHONE)], "kind", ("只能是 draft、approved 之一",)),
    ],
)
def test_query_parameters_too(
    params: dict[str, str] | list[tuple[str, str]], named: str, words: tuple[str, ...]
) -> None:
    resp = client.get("/report", params=params)
    assert resp.status_code == 422 and resp.json()["fields"] == [named]
    for word in words:
        assert word in resp.json()["message"], resp.json()["message"]
    assert PHONE not in resp.text


def test_nothing_is_said_about_a_part_the_name_does_not_reach() -> None:
    """A dict key may be an ID number: the parameter is named, no hint about its insides is given."""
    resp = client.post("/case", json={**GOOD, "datasets": {PHONE: [1]}})
    answer = resp.json()
    assert answer["fields"] == ["datasets"] and answer["message"] == "请求参数有误：datasets。"
    assert PHONE not in resp.text


def test_a_body_that_is_not_json_says_so() -> None:
    resp = client.post(
        "/case",
        content=b'{"note": "\xe7\xa7\xbb\xe9\x80\x81", bad',
        headers={"content-type": "application/json"},
    )
    answer = resp.json()
    assert resp.status_code == 422 and answer["fields"] == ["body"]
    assert answer["message"] == "请求参数有误：body（不是有效的 JSON，请检查引号、逗号和括号是否成对）。"
    assert "not valid JSON" in answer["message_en"]


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
def test_a_body_nested_too_deeply_says_so(body: bytes) -> None:
    """Valid JSON nested past the parser's recursion limit (a few KB) used to answer a bare 400 "http_error"
    ("请求无法处理", nothing to act on): it is an unreadable body like any other, and says why."""
    resp = client.post("/case", content=body, headers={"content-type": "application/json"})
    answer = resp.json()
    assert resp.status_code == 422 and answer["error"] == "invalid_request", resp.text
    assert answer["fields"] == ["body"] and "嵌套层数过多" in answer["message"]
    assert "nested too deeply" in answer["message_en"]


def test_several_parameters_each_with_its_own_hint() -> None:
    answer = client.post("/case", json={"disposition": "closed", "note": ""}).json()
    assert answer["fields"] == ["disposition", "note"]
    assert answer["message"] == (
        "请求参数有误：disposition（只能是 substantiated、unsubstantiated、referred 之一）；"
        "note（不能为空）。"
    )
    assert answer["message_en"] == (
        "Invalid request parameters: disposition (must be one of substantiated, unsubstantiated, referred); "
        "note (must not be empty)."
    )


# -- one table: a mistake reads the same in a GRASSROOTS_ variable and in a request ----------------------


class _Knobs(BaseSettings):
    """Settings shaped like the request parameters below (same types, same limits)."""

    model_config = SettingsConfigDict(env_prefix="KNOB_")

    count: int = Field(10, ge=1)
    ratio: float = 0.5
    strict: bool = False
    mode: Literal["fast", "slow"] = "fast"
    names: list[str] = Field(default_factory=list)


@app.get("/knobs")
async def knobs(
    count: Annotated[int, Query(ge=1)] = 10,
    ratio: float = 0.5,
    strict: bool = False,
    mode: Literal["fast", "slow"] = "fast",
) -> dict[str, Any]:
    return {}


class _KnobsBody(BaseModel):
    names: list[str] = Field(default_factory=list)


@app.post("/knobs")
async def post_knobs(body: _KnobsBody) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize(
    ("name", "sent", "zh", "en"),
    [
        ("count", "eighty", "须为整数", "must be a whole number"),
        ("count", "0", "不能小于 1", "must be at least 1"),
        ("ratio", "half", "须为数字", "must be a number"),
        ("strict", "maybe", "须为 true 或 false", "must be true or false"),
        ("mode", "medium", "只能是 fast、slow 之一", "must be one of fast, slow"),
    ],
)
def test_a_setting_and_a_request_parameter_say_the_same_about_the_same_mistake(
    monkeypatch: pytest.MonkeyPatch, name: str, sent: str, zh: str, en: str
) -> None:
    monkeypatch.setenv(f"KNOB_{name.upper()}", sent)
    with pytest.raises(ValidationError) as caught:
        _Knobs()
    (problem,) = configuration_error(caught.value, "KNOB_").problems
    assert (problem.zh, problem.en) == (zh, en)
    answer = client.get("/knobs", params={name: sent}).json()
    assert answer["message"] == f"请求参数有误：{name}（{zh}）。"
    assert answer["message_en"] == f"Invalid request parameters: {name} ({en})."


def test_a_list_that_is_not_a_list_reads_the_same_in_a_setting_and_in_a_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KNOB_NAMES", '"RS256"')  # valid JSON, but a string
    with pytest.raises(ValidationError) as caught:
        _Knobs()
    (problem,) = configuration_error(caught.value, "KNOB_").problems
    answer = client.post("/knobs", json={"names": "RS256"}).json()
    assert answer["message"] == f"请求参数有误：names（{problem.zh}）。" and "JSON" in problem.zh
    assert answer["message_en"] == f"Invalid request parameters: names ({problem.en})."


#: Every pydantic error type the settings' table or the 422 table answered before they became one, with
#: the context pydantic gives it: each still has words.
HANDLED: list[tuple[str, dict[str, Any]]] = [
    ("missing", {}),
    ("int_parsing", {}),
    ("int_type", {}),
    ("int_from_float", {}),
    ("float_parsing", {}),
    ("float_type", {}),
    ("bool_parsing", {}),
    ("bool_type", {}),
    ("string_type", {}),
    ("list_type", {}),
    ("dict_type", {}),
    ("model_attributes_type", {}),
    ("json_invalid", {"error": "EOF while parsing"}),
    ("json_type", {}),
    ("timezone_aware", {}),
    ("datetime_parsing", {"error": "invalid character"}),
    ("date_from_datetime_parsing", {"error": "invalid character"}),
    ("greater_than_equal", {"ge": 2}),
    ("greater_than", {"gt": 0}),
    ("less_than_equal", {"le": 9}),
    ("less_than", {"lt": 10}),
    ("string_too_short", {"min_length": 1}),
    ("string_too_short", {"min_length": 15}),
    ("string_too_long", {"max_length": 10}),
    ("too_short", {"min_length": 1}),
    ("too_long", {"max_length": 10}),
    ("enum", {"expected": "'development' or 'production'"}),
    ("enum", {"expected": "1, 2 or 3"}),
    ("literal_error", {"expected": "'none', 'otlp' or 'console'"}),
    ("month", {}),
    ("string_pattern_mismatch", {"pattern": "^(open|closed)$"}),
    ("string_pattern_mismatch", {"pattern": r"^\d+$"}),
    ("extra_forbidden", {}),
]


@pytest.mark.parametrize(("kind", "ctx"), HANDLED, ids=[f"{k}-{i}" for i, (k, _) in enumerate(HANDLED)])
def test_every_error_type_either_table_handled_still_has_words_in_both_languages(
    kind: str, ctx: dict[str, Any]
) -> None:
    hint = validation_hint({"type": kind, "loc": ("x",), "msg": "", "ctx": ctx})
    assert hint is not None
    zh, en = hint
    assert CJK.search(zh) and en and not CJK.search(en)
    # One wording: "须为…" for what a value must be, never the settings' old "应为…".
    assert not zh.startswith("应为")


def test_numbers_in_an_enum_are_listed_as_well() -> None:
    assert validation_hint({"type": "enum", "ctx": {"expected": "1, 2 or 3"}}) == (
        "只能是 1、2、3 之一",
        "must be one of 1, 2, 3",
    )
