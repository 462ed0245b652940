"""A request the schema refuses says, for each parameter it names, what is wrong and what it takes.

"请求参数有误：disposition。" left a supervisor guessing; the schema knows the answer (the allowed values,
the length, the bound, the format), so the message carries it, Chinese first, and still never the value
sent nor a dict key or list index inside it. Table: (body or query sent, parameter named, words in the
Chinese message).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.app import install_error_handlers

PHONE = "13812345678"


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
    month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = "",
    status: Annotated[str, Query(pattern="^(open|closed|all)$")] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    return {}


client = TestClient(app)
GOOD = {"disposition": "referred", "note": "移送"}

CASES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("a value not in the list", {**GOOD, "disposition": PHONE}, "disposition", ("substantiated", "referred")),
    ("an empty note", {**GOOD, "note": ""}, "note", ("不能为空",)),
    ("a note too long", {**GOOD, "note": "很长" * 10}, "note", ("最多 10 个字符",)),
    ("a missing field", {"note": "移送"}, "disposition", ("必须填写",)),
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
        ({"month": "2026-13"}, "month", ("YYYY-MM", "2026-11")),
        ({"status": PHONE}, "status", ("open、closed、all",)),
        ({"limit": "0"}, "limit", ("不能小于 1",)),
        ({"limit": PHONE + "x"}, "limit", ("须为整数",)),
    ],
)
def test_query_parameters_too(params: dict[str, str], named: str, words: tuple[str, ...]) -> None:
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
