"""The pipeline's pure stages, each alone (house style: every stage testable by itself)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.oidc import AuthError
from gateway.errors import InvalidRequest, Unauthenticated
from gateway.pipeline import (
    DataRequest,
    _Unparsable,
    acting_role,
    authenticate,
    check_page_size,
    parse_data_request,
    project_fields,
    recheck_scope,
)
from policies import Obligations

A = "310151101201"
B = "310151101202"
TOWN = "310151101000"
OTHER_TOWN_VILLAGE = "310151102201"


@pytest.mark.parametrize(
    ("scope", "org", "kept"),
    [
        ((A,), A, True),
        ((A,), B, False),
        ((TOWN,), A, True),
        ((TOWN,), OTHER_TOWN_VILLAGE, False),
        ((A, B), B, True),
        (("000000000000",), A, True),
        ((A,), "3101511012", False),  # malformed: dropped, never trusted
        ((A,), None, False),  # missing org field: dropped
        ((A,), 310151101201, False),  # wrong type: dropped
    ],
)
def test_recheck_scope(scope: tuple[str, ...], org: object, kept: bool) -> None:
    records = [{"id": "R1", "village_code": org}]
    result, dropped = recheck_scope(records, scope, "village_code")
    assert (len(result) == 1) is kept
    assert dropped == (0 if kept else 1)


@given(st.lists(st.dictionaries(st.sampled_from(["id", "name", "mobile", "x", "remark"]), st.text())))
def test_projection_never_returns_a_field_outside_the_whitelist(records: list[dict[str, str]]) -> None:
    allowed = ("name", "remark")
    for record in project_fields(records, allowed):
        assert set(record) <= {"id", *allowed}


def _obligations(max_records: int) -> Obligations:
    return Obligations(
        row_scope=(A,),
        fields=("name",),
        masking_profile="standard",
        max_records=max_records,
        quota_left=None,
        grant_id="g",
    )


@pytest.mark.parametrize(
    ("page", "page_size", "max_records", "platform_max", "ok"),
    [
        (1, 20, 200, 100, True),
        (1, 100, 200, 100, True),
        (1, 101, 200, 100, False),
        (1, 51, 50, 100, False),  # the scenario's cap is tighter than the platform's
        (1, 0, 200, 100, False),
        (0, 20, 200, 100, False),
    ],
)
def test_page_size_limits(page: int, page_size: int, max_records: int, platform_max: int, ok: bool) -> None:
    request = DataRequest("residents", "S", page=page, page_size=page_size)
    if ok:
        check_page_size(request, _obligations(max_records), platform_max)
    else:
        with pytest.raises(InvalidRequest):
            check_page_size(request, _obligations(max_records), platform_max)


@pytest.mark.parametrize(
    ("page_size", "max_records", "platform_max", "code", "message_zh", "message_en"),
    [
        # Below 1 is not "over the limit".
        (0, 200, 100, "invalid_page_size", "每页条数至少为 1（最多 100 条）。", "at least 1 (at most 100)"),
        # The scenario allows 200 but the platform's page limit is 100: the limit in force is 100, and the
        # message says so instead of promising 200.
        (
            150,
            200,
            100,
            "page_size_over_limit",
            "每页最多 100 条（平台每页上限）",
            "at most 100 (the gateway's",
        ),
        (
            51,
            50,
            100,
            "page_size_over_limit",
            "每页最多 50 条（本场景本次可查看的上限）",
            "at most 50 (what this",
        ),
    ],
)
def test_page_size_refusals_state_the_limit_in_force(
    page_size: int, max_records: int, platform_max: int, code: str, message_zh: str, message_en: str
) -> None:
    request = DataRequest("residents", "S", page=1, page_size=page_size)
    with pytest.raises(InvalidRequest) as refused:
        check_page_size(request, _obligations(max_records), platform_max)
    error = refused.value
    assert error.code == code
    assert error.message_zh.startswith(message_zh) and message_en in error.message_en
    assert error.extra == {"max_page_size": min(max_records, platform_max)}
    assert "200" not in error.message_zh + error.message_en


@pytest.mark.parametrize(("quota_left", "page_size"), [(77, 100), (77, 78), (1, 2)])
def test_a_page_larger_than_what_is_left_of_todays_quota_says_so(quota_left: int, page_size: int) -> None:
    """With 77 records left of the day's 2,000, a cadre asking for her usual 100 a page was told "at most
    77 (what this scenario allows you per request now)": neither why, nor that tomorrow it is 100 again."""
    request = DataRequest("residents", "S", page=1, page_size=page_size)
    left = Obligations(
        row_scope=(A,),
        fields=("name",),
        masking_profile="standard",
        max_records=quota_left,  # the engine's min(scenario cap, quota left)
        quota_left=quota_left,
        grant_id="g",
    )
    with pytest.raises(InvalidRequest) as refused:
        check_page_size(request, left, 100)
    error = refused.value
    assert (error.code, error.extra) == ("page_size_over_limit", {"max_page_size": quota_left})
    assert error.message_zh == (
        f"今天本场景的每日查看数量只剩 {quota_left} 条，不够这一页。请把每页条数减少到 {quota_left} 条以内，"
        "或明天再查。"
    )
    assert "today's limit" in error.message_en and "tomorrow" in error.message_en
    check_page_size(DataRequest("residents", "S", page=1, page_size=quota_left), left, 100)


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "dXNlcjpwYXNz"])
def test_a_header_that_is_no_bearer_token_says_bearer_is_expected(authorization: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(authenticate(cast(Any, None), authorization))
    error = refused.value
    assert error.code == "invalid_token"
    assert "Bearer" in error.message_zh and "过期" not in error.message_zh
    assert "bearer token" in error.message_en and "expired" not in error.message_en
    assert "dXNlcjpwYXNz" not in error.message_zh + error.message_en  # the header is never repeated


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "bearer   "])
def test_bearer_with_no_token_says_the_token_is_empty_not_that_basic_is_refused(authorization: str) -> None:
    """What a copy-pasted ``curl -H "Authorization: Bearer $TOKEN"`` sends when fetching the token failed:
    it was told "不接受 Basic 等其他方式", which sent the reader looking for a Basic header she never sent."""
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(authenticate(cast(Any, None), authorization))
    error = refused.value
    assert error.code == "invalid_token"
    assert error.message_zh.startswith("登录凭证为空：Authorization 请求头中 Bearer 后面没有访问令牌。")
    assert "Basic" not in error.message_zh + error.message_en


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer\u3000eyJhbGciOiJFZERTQSJ9.e30.c2ln",  # a full-width space from a Chinese input method
        "Bearer\teyJhbGciOiJFZERTQSJ9.e30.c2ln",
        "Bearer:eyJhbGciOiJFZERTQSJ9.e30.c2ln",
        "bearereyJhbGciOiJFZERTQSJ9.e30.c2ln",
    ],
)
def test_bearer_and_the_token_not_parted_by_a_plain_space_says_so_not_that_basic_is_refused(
    authorization: str,
) -> None:
    """A full-width space after Bearer was told "不接受 Basic 等其他方式": she had sent Bearer."""
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(authenticate(cast(Any, None), authorization.encode().decode("latin-1")))
    error = refused.value
    assert error.code == "invalid_token"
    assert error.message_zh.startswith(
        "登录凭证格式不对：Authorization 请求头中 Bearer 与访问令牌之间须用一个半角空格隔开"
    )
    assert "Basic" not in error.message_zh + error.message_en
    assert "eyJ" not in error.message_zh + error.message_en


_JWT = "eyJhbGciOiJFZERTQSJ9.e30.c2ln"


@pytest.mark.parametrize(
    ("authorization", "said_zh", "said_en"),
    [
        (f'Bearer "{_JWT}"', "访问令牌两边多了引号", "wrapped in quotes"),
        (f"Bearer '{_JWT}'", "访问令牌两边多了引号", "wrapped in quotes"),
        (f"Bearer “{_JWT}”", "访问令牌两边多了引号", "wrapped in quotes"),
        (f'Bearer "{_JWT}', "访问令牌两边多了引号", "wrapped in quotes"),
        (f"Bearer Bearer {_JWT}", "Bearer 写了两次", "says Bearer twice"),
        (f"Bearer bearer  {_JWT}", "Bearer 写了两次", "says Bearer twice"),
        ("Bearer Bearer", "Bearer 写了两次", "says Bearer twice"),
    ],
)
def test_a_quoted_token_or_bearer_twice_says_exactly_what_to_fix(
    authorization: str, said_zh: str, said_en: str
) -> None:
    """``Bearer "eyJ..."`` and ``Bearer Bearer eyJ...`` were told "malformed token, sign in again": a new
    sign-in sends the same header and fails the same way. Each is named, with the header to send, and
    the token is never repeated. (Refused before any verification: no verifier is given.)"""
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(authenticate(cast(Any, None), authorization.encode().decode("latin-1")))
    error = refused.value
    assert error.code == "invalid_token"
    assert error.message_zh.startswith("登录凭证格式不对：") and said_zh in error.message_zh
    assert said_en in error.message_en and "Authorization: Bearer <access token>" in error.message_en
    assert "Authorization: Bearer <访问令牌>" in error.message_zh
    assert _JWT not in error.message_zh + error.message_en
    assert 'error="invalid_request"' in (error.headers or {})["WWW-Authenticate"]


class _RefusesAsMalformed:
    async def verify(self, token: str) -> Any:
        raise AuthError("malformed_token")


@pytest.mark.parametrize("stray", ["\u00a0", "\u200b", "\u3000", "\ufeff", "\uff0e"])
def test_a_token_copied_with_a_character_no_token_holds_says_so_not_sign_in_again(stray: str) -> None:
    """A token copied from a web page or a chat with a no-break or zero-width space (or a full-width dot)
    in it was told "登录凭证格式错误，请重新登录": the new token, pasted the same way, failed the same way."""
    runtime = cast(Any, type("R", (), {"verifier": _RefusesAsMalformed()})())
    header = f"Bearer {_JWT}{stray}" if stray != "\uff0e" else f"Bearer {_JWT.replace('.', stray, 1)}"
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(authenticate(runtime, header.encode().decode("latin-1")))
    error = refused.value
    assert error.code == "invalid_token"
    assert "混入了不属于令牌的字符" in error.message_zh and "请重新登录" not in error.message_zh
    assert "copy the token itself again" in error.message_en and error.message_en.isascii()
    assert _JWT not in error.message_zh + error.message_en


def test_a_truncated_token_is_still_malformed_sign_in_again() -> None:
    runtime = cast(Any, type("R", (), {"verifier": _RefusesAsMalformed()})())
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(authenticate(runtime, f"Bearer {_JWT[:20]}"))
    assert refused.value.code == "malformed_token"


@pytest.mark.parametrize("scenario", ["低保年度复核", "dibao_review", "DIBAO_REVIEW ", " DIBAO_REVIEW"])
def test_a_scenario_code_typed_as_its_name_or_with_spaces_says_where_the_codes_are(scenario: str) -> None:
    """The name a cadre knows ("低保年度复核"), lower case, or a space copied with the code: she was told
    the code's shape, "e.g. DIBAO_REVIEW", but not where the codes are, nor that a space was the fault."""
    with pytest.raises(_Unparsable) as caught:
        parse_data_request("residents", scenario, None, None)
    error = caught.value.error
    assert error.code == "invalid_scenario"
    assert "不能写中文名称，前后也不能有空格" in error.message_zh
    assert "grassroots grants scenarios" in error.message_zh and "lists the codes" in error.message_en
    assert "低保" not in error.message_zh + error.message_en  # what was typed is not repeated


@pytest.mark.parametrize(
    ("scenario", "page", "page_size", "code"),
    [
        (None, None, None, "missing_scenario"),
        ("S", "two", None, "invalid_page"),
        ("S", None, "1e3", "invalid_page_size"),
        # what int() reads but nobody writes for a page number: all were served as pages
        ("S", "1_0", None, "invalid_page"),
        ("S", "+3", None, "invalid_page"),
        ("S", " 2", None, "invalid_page"),
        ("S", None, "\u0665", "invalid_page_size"),  # an Arabic-Indic five
        ("S", None, "\uff15", "invalid_page_size"),  # a full-width five
    ],
)
def test_unparsable_requests_name_the_parameter(
    scenario: str | None, page: str | None, page_size: str | None, code: str
) -> None:
    with pytest.raises(_Unparsable) as caught:
        parse_data_request("residents", scenario, page, page_size)
    assert caught.value.error.code == code


@pytest.mark.parametrize(
    ("pairs", "unknown"),
    [
        # a typo of page_size used to be ignored: a cadre asking for 1 record was served 20
        ([("scenario", "DIBAO_REVIEW"), ("page_szie", "1")], True),
        # fields are the grant's, not the caller's: ignored, the answer looked like one to the question
        ([("scenario", "DIBAO_REVIEW"), ("fields", "birth_date")], True),
        ([("scenario", "DIBAO_REVIEW"), ("13912345678", "")], True),
        ([("scenario", "DIBAO_REVIEW"), ("page", "2"), ("page_size", "5")], False),
    ],
)
def test_a_query_parameter_the_path_does_not_read_is_refused_without_naming_it(
    pairs: list[tuple[str, str]], unknown: bool
) -> None:
    from gateway.routes.data import data_query

    query, repeated, found = data_query(pairs)
    assert (found, repeated) == (unknown, ())
    if not unknown:
        return
    with pytest.raises(_Unparsable) as caught:
        parse_data_request(
            "residents",
            query["scenario"],
            query["page"],
            query["page_size"],
            unknown_parameters=found,
        )
    error = caught.value.error
    assert (error.code, error.status_code) == ("unknown_parameter", 422)
    assert error.message_zh.startswith("查询参数中有本接口不接受的参数，本次未返回任何数据。")
    assert "scenario、page、page_size" in error.message_zh and "policy explain" in error.message_en
    # what was typed is never repeated back
    for typed in ("page_szie", "birth_date", "13912345678"):
        assert typed not in error.message_zh + error.message_en


@pytest.mark.parametrize(
    ("dataset", "scenario"),
    [("residents<script>", "13912345678"), ("13912345678", "310151199001011234"), ("../etc", "x y")],
)
def test_hostile_codes_are_not_recorded_verbatim(dataset: str, scenario: str) -> None:
    with pytest.raises(_Unparsable) as caught:
        parse_data_request(dataset, scenario, "1", "20")
    assert caught.value.error.code == "invalid_scenario"
    assert caught.value.partial.dataset == "invalid"
    assert caught.value.partial.scenario == ""


_CODES = st.sampled_from(
    [
        A,
        B,
        TOWN,
        OTHER_TOWN_VILLAGE,
        "000000000000",
        "31",
        "3101",
        "310151",
        "310151101",
        "3101511012",
        f"{A}-G01",
        f"{A}-G02",
        f"{B}-G01",
        "310151101201-G00",
        "",
        "31015110120x",
        "0031",
        "abcdefghijkl",
    ]
)


@given(st.lists(_CODES, max_size=4), st.one_of(_CODES, st.none(), st.integers()))
def test_recheck_scope_keeps_exactly_what_covers_allows(scope: list[str], org: object) -> None:
    """The page-level shortcut (scope prefixes computed once) keeps a row exactly when some scope covers
    its division code by ``policies.covers`` (a malformed code on either side covering nothing)."""
    from gateway.pipeline import _covers_safely
    from policies.divisions import is_grid

    divisions = [code for code in scope if not is_grid(code)]
    expected = isinstance(org, str) and any(_covers_safely(code, org) for code in divisions)
    kept, _ = recheck_scope([{"id": "R1", "village_code": org}], scope, "village_code")
    assert bool(kept) is expected


@given(st.lists(_CODES, max_size=4), st.lists(st.one_of(_CODES, st.none(), st.integers()), max_size=12))
def test_recheck_scope_on_a_page_keeps_each_row_as_alone(scope: list[str], orgs: list[object]) -> None:
    """Rows sharing a division code are decided once per page (memo): each row is kept or dropped
    exactly as it would be on a page of its own, in order, and the drop count adds up."""
    records = [{"id": f"R{i}", "village_code": org} for i, org in enumerate(orgs)]
    kept, dropped = recheck_scope(records, scope, "village_code")
    alone = [r for r in records if recheck_scope([r], scope, "village_code")[0]]
    assert kept == alone
    assert dropped == len(records) - len(alone)


def test_masking_follows_the_role_the_scenario_admits_not_the_order_of_the_tokens_roles() -> None:
    from policies.scenarios import load_scenarios

    grid_visit = load_scenarios().get("GRID_VISIT")
    assert grid_visit is not None and "grid_worker" in grid_visit.roles_allowed
    assert "auditor" not in grid_visit.roles_allowed
    assert acting_role(("auditor", "grid_worker"), grid_visit) == "grid_worker"
    assert acting_role(("grid_worker",), grid_visit) == "grid_worker"
    # No scenario known (the request is refused before masking anyway): the first role, as before.
    assert acting_role(("auditor", "grid_worker"), None) == "auditor"
    assert acting_role((), None) == ""


@pytest.mark.parametrize(
    ("record_id", "personal"),
    [
        ("310210195703021234", True),  # an ID number typed where the record's id goes
        ("310210-19570302-123X", True),  # in the groups people write it, a wrong check character kept
        ("３１０２１０１９５７０３０２１２３４", True),  # full-width, from a Chinese input method
        ("13812345678", True),  # a mobile
        ("R075f2e45", False),  # the registry's opaque ids
        ("H75649e62", False),
        ("123456789012345678", False),  # a numeric key with no birth date in it is not an ID number
        ("1234567890123456789", False),
    ],
)
def test_a_resident_number_typed_as_the_record_id_is_refused_saying_what_a_record_id_is(
    record_id: str, personal: bool
) -> None:
    """A cadre looking a resident up typed her ID number into the record's place in the link: it went to
    the departmental system in a URL and came back 404 "not found", which told her nothing to do."""
    if not personal:
        assert parse_data_request("residents", "DIBAO_REVIEW", None, None, record_id=record_id).record_id
        return
    with pytest.raises(_Unparsable) as caught:
        parse_data_request("residents", "DIBAO_REVIEW", None, None, record_id=record_id)
    error = caught.value.error
    assert (error.code, error.status_code) == ("personal_data_in_record_id", 422)
    assert error.message_zh.startswith("链接中的记录编号像是身份证号或手机号，本次未查询")
    assert "R075f2e45" in error.message_zh and "list your jurisdiction's records first" in error.message_en
    for digits in ("19570302", "12345678", "１９５７"):
        assert digits not in error.message_zh + error.message_en
