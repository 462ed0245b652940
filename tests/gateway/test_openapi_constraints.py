"""The OpenAPI document is as strict as the server: each constrained parameter and body field carries the
constraint its validator checks, taken from the validator's own constant, in a form ECMA-262 reads alike.

Before, division codes, dataset, scenario, record and system ids, reasons and enumerations had no
``pattern``/``enum``/``maxLength`` in the document (or a looser one: 2,000 characters where the server takes
500), so a client generated from it sent what the server then refused with a 422.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from admission import DATASET_ID_PATTERN, SYSTEM_ID_PATTERN
from gateway.free_text import NOT_BLANK, TEXT_MAX
from gateway.openapi_doc import ecma_pattern
from gateway.pipeline import DATASET_PATTERN, MAX_PAGE, SCENARIO_PATTERN, personal_data_as_record_id
from gateway.routes.masking_admin import _CONTEXT as UNMASK_CONTEXT
from gateway.upstream import RECORD_ID_PATTERN
from grassroots_common.divisions import BOUNDARIES, DIVISION_CODE, VILLAGE_CODE, is_division_code
from policies import GrantStatus
from policies.divisions import DivisionLevel, level_of
from policies.grants import BREAK_GLASS_MAX_HOURS
from tests.stack import Stack, stack_fixture

ORG = DIVISION_CODE.pattern
TEXT = {"pattern": NOT_BLANK.pattern, "maxLength": TEXT_MAX}
RECORDS = "/api/v1/datasets/{dataset}/records"
RECORD = f"{RECORDS}/{{record_id}}"
SYSTEM = "/api/v1/admission/systems/{system_id}"
VILLAGE = "/api/v1/admission/burden/villages/{village_code}"

#: (method, path, where, name): the constraints the document must state, as the validators hold them.
#: ``where`` is ``path``/``query`` or ``body:Schema`` for a field of a component schema.
CONSTRAINED: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("GET", RECORDS, "path", "dataset", {"pattern": DATASET_PATTERN.pattern}),
    ("GET", RECORDS, "query", "scenario", {"pattern": SCENARIO_PATTERN.pattern}),
    ("GET", RECORDS, "query", "page", {"minimum": 1, "maximum": MAX_PAGE}),
    ("GET", RECORD, "path", "dataset", {"pattern": DATASET_PATTERN.pattern}),
    ("GET", RECORD, "path", "record_id", {"pattern": RECORD_ID_PATTERN.pattern}),
    ("GET", RECORD, "query", "scenario", {"pattern": SCENARIO_PATTERN.pattern}),
    ("GET", "/api/v1/grants", "query", "org", {"pattern": ORG}),
    ("GET", "/api/v1/grants", "query", "status", {"enum": [s.value for s in GrantStatus]}),
    ("GET", "/api/v1/supervision/events", "query", "org", {"pattern": ORG}),
    ("GET", "/api/v1/supervision/reports", "query", "org", {"pattern": ORG}),
    ("GET", "/api/v1/supervision/reports", "query", "org_level", {"enum": list(BOUNDARIES)}),
    ("GET", "/api/v1/supervision/anomalies", "query", "org", {"pattern": ORG}),
    ("GET", "/api/v1/supervision/reports/monthly", "query", "org", {"pattern": ORG}),
    ("GET", VILLAGE, "path", "village_code", {"pattern": VILLAGE_CODE.pattern}),
    ("GET", SYSTEM, "path", "system_id", {"pattern": SYSTEM_ID_PATTERN}),
    ("POST", f"{SYSTEM}/revoke", "path", "system_id", {"pattern": SYSTEM_ID_PATTERN}),
    ("POST", "/api/v1/grants", "body:GrantRequestBody", "org_scope", {"pattern": ORG}),
    ("POST", "/api/v1/grants", "body:GrantRequestBody", "reason", TEXT),
    ("POST", "/api/v1/grants/{grant_id}/reject", "body:gateway__routes__grants__ReasonBody", "reason", TEXT),
    ("POST", "/api/v1/break-glass", "body:BreakGlassBody", "reason", TEXT),
    ("POST", "/api/v1/break-glass", "body:BreakGlassBody", "org_scope", {"pattern": ORG}),
    ("POST", "/api/v1/break-glass", "body:BreakGlassBody", "hours",
     {"minimum": 1, "maximum": BREAK_GLASS_MAX_HOURS}),
    ("POST", "/api/v1/break-glass/reviews/{review_id}/close", "body:CloseReviewBody", "note", TEXT),
    ("POST", "/api/v1/policy/decide", "body:DecideBody", "org", {"pattern": ORG}),
    ("POST", "/api/v1/policy/replay", "body:ProposedGrant", "org_scope", {"pattern": ORG}),
    ("POST", "/api/v1/masking/proposals", "body:ProposalBody", "reason", TEXT),
    ("POST", "/api/v1/masking/proposals/{proposal_id}/approve", "body:DecisionBody", "note",
     {"maxLength": TEXT_MAX}),
    ("POST", "/api/v1/masking/unmask", "body:UnmaskBody", "purpose", TEXT),
    ("POST", "/api/v1/masking/unmask", "body:UnmaskBody", "context", {"pattern": UNMASK_CONTEXT.pattern}),
    ("POST", "/api/v1/supervision/complaints/{complaint_id}/jurisdiction", "body:JurisdictionIn", "org",
     {"pattern": ORG}),
]  # fmt: skip


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    from gateway.app import create_app
    from gateway.settings import Settings

    spec: dict[str, Any] = create_app(Settings()).openapi()
    return spec


def declared(spec: dict[str, Any], method: str, path: str, where: str, name: str) -> dict[str, Any]:
    if where.startswith("body:"):
        field: dict[str, Any] = spec["components"]["schemas"][where.removeprefix("body:")]["properties"][name]
        return field
    operation = spec["paths"][path][method.lower()]
    (parameter,) = [p for p in operation["parameters"] if p["in"] == where and p["name"] == name]
    schema: dict[str, Any] = parameter["schema"]
    return schema


@pytest.mark.parametrize(("method", "path", "where", "name", "expected"), CONSTRAINED)
def test_the_document_states_the_validators_constraint(
    document: dict[str, Any], method: str, path: str, where: str, name: str, expected: dict[str, Any]
) -> None:
    schema = declared(document, method, path, where, name)
    assert {key: schema.get(key) for key in expected} == expected


def test_a_dataset_code_is_one_pattern_on_the_data_path_and_in_a_registration() -> None:
    assert DATASET_PATTERN.pattern == DATASET_ID_PATTERN


def test_every_system_id_in_a_path_has_the_models_pattern(document: dict[str, Any]) -> None:
    found = [
        p["schema"].get("pattern")
        for item in document["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
        if p["name"] == "system_id"
    ]
    assert len(found) >= 17
    assert set(found) == {SYSTEM_ID_PATTERN}


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_every_pattern_in_the_document_is_portable(document: dict[str, Any]) -> None:
    patterns = set(_patterns(document))
    assert len(patterns) >= 8
    for pattern in patterns:
        ecma_pattern(re.compile(pattern), anchored=False)  # anchoring: where the patterns are made


@pytest.mark.parametrize(
    "expression",
    [r"^\d{12}$", r"^a\Z", r"^(?P<x>a)$", r"^a++$", r"^(?>a)$", r"^a{,3}$", r"^\s$", r"^[a-z]+", r"[a-z]+$"],
)
def test_python_only_syntax_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match=r"ECMA-262|anchored"):
        ecma_pattern(re.compile(expression))


def test_flags_are_refused() -> None:
    with pytest.raises(ValueError, match="flags"):
        ecma_pattern(re.compile("^[a-z]$", re.IGNORECASE))


# -- the patterns are the validators: same verdict on any text ---------------------------------------------

_DIGITS = st.text(alphabet="0123456789", max_size=14)


@given(st.one_of(st.from_regex(DIVISION_CODE, fullmatch=True), _DIGITS, st.text(max_size=14)))
def test_the_division_pattern_is_the_parser(code: str) -> None:
    assert bool(DIVISION_CODE.fullmatch(code)) == is_division_code(code)


@given(st.one_of(st.from_regex(VILLAGE_CODE, fullmatch=True), _DIGITS, st.text(max_size=13)))
def test_the_village_pattern_is_a_village_level_code(code: str) -> None:
    try:
        village = level_of(code) is DivisionLevel.VILLAGE
    except ValueError:
        village = False
    assert bool(VILLAGE_CODE.fullmatch(code)) == village


_SPACES = st.sampled_from(" \t\n\x1c\x85\u3000\ufeff\u200bab")


@given(st.text(alphabet=_SPACES, max_size=6) | st.text(max_size=6))
def test_not_blank_is_what_strip_leaves(text: str) -> None:
    assert (NOT_BLANK.search(text) is not None) == (text.strip() != "")


def test_not_blank_names_every_space_strip_trims() -> None:
    """It lists the spaces up to U+3000: there are none above (a new Unicode version could add one)."""
    assert [hex(c) for c in range(0x3001, sys.maxunicode + 1) if chr(c).isspace()] == []


# -- ECMA-262 reads each pattern as Python does (node, where installed) -------------------------------------

_NODE_LOOP = """
const rl = require('readline').createInterface({input: process.stdin});
rl.on('line', (line) => {
  const [pattern, text] = JSON.parse(line);
  console.log(JSON.stringify(new RegExp(pattern, 'u').test(text)));
});
"""


@pytest.fixture(scope="module")
def patterns(document: dict[str, Any]) -> list[str]:
    return sorted(set(_patterns(document)))


@pytest.fixture(scope="module")
def ecma() -> Iterator[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: ECMA-262 semantics checked by syntax only")
    process = subprocess.Popen(
        [node, "-e", _NODE_LOOP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    def test(pattern: str, text: str) -> bool:
        stdin.write(json.dumps([pattern, text]) + "\n")
        result: bool = json.loads(stdout.readline())
        return result

    yield test
    stdin.close()
    process.wait(timeout=10)


_CHARACTERS = st.characters(codec="utf-8")


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_ecma_262_and_the_validators_agree_on_every_pattern(
    patterns: list[str], ecma: Any, data: st.DataObject
) -> None:
    """A validator matches a ``^...$`` expression whole (``fullmatch``), the others anywhere (``search``):
    ``re.search`` would take a trailing newline that neither ``fullmatch`` nor ECMA-262 takes."""
    pattern = data.draw(st.sampled_from(patterns))
    near = st.from_regex(re.compile(pattern), fullmatch=True).flatmap(
        lambda s: st.sampled_from([s, s + "\n", s[:-1], s + "0", "\n" + s, s.replace("0", "０")])
    )
    text = data.draw(near | st.text(_CHARACTERS, max_size=20))
    whole = pattern.startswith("^") and pattern.endswith("$")
    python = re.fullmatch(pattern, text) if whole else re.search(pattern, text)
    assert ecma(pattern, text) == (python is not None), (pattern, text)


# -- values the document allows are not refused as malformed by the running gateway ------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def allowed(
    document: dict[str, Any], method: str, path: str, where: str, name: str
) -> st.SearchStrategy[Any]:
    schema = declared(document, method, path, where, name)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    return st.from_regex(re.compile(schema["pattern"]), fullmatch=True)


#: (who, path template, where, name, the query around it): each request is one a well-formed value cannot
#: make a 422 of (an unknown dataset or system is a 404, an organisation outside the caller's scope a 404).
PROBES = [
    ("cadre_a", RECORDS, "path", "dataset", {"scenario": "DIBAO_REVIEW"}),
    ("cadre_a", RECORDS, "query", "scenario", {}),
    ("cadre_a", RECORD, "path", "record_id", {"scenario": "DIBAO_REVIEW"}),
    ("ca_steward", "/api/v1/grants", "query", "org", {}),
    ("ca_steward", "/api/v1/grants", "query", "status", {}),
    ("supervisor", "/api/v1/supervision/events", "query", "org", {}),
    ("supervisor", "/api/v1/supervision/reports", "query", "org_level", {}),
    ("rv_civil_affairs", VILLAGE, "path", "village_code", {}),
    ("rv_civil_affairs", SYSTEM, "path", "system_id", {}),
]  # fmt: skip


@pytest.mark.parametrize(("user", "path", "where", "name", "query"), PROBES)
def test_a_value_the_document_allows_is_not_refused_as_malformed(
    stack: Stack, document: dict[str, Any], user: str, path: str, where: str, name: str, query: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    fill = {"dataset": "residents", "record_id": "R075f2e45"}

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=allowed(document, "GET", path, where, name))
    def check(value: Any) -> None:
        if name == "record_id":
            # Expressed by no pattern: a record id shaped like an ID or mobile number is refused as personal
            # data (422 personal_data_in_record_id), never sent to the departmental system.
            assume(not personal_data_as_record_id(value))
        url = path.format(**{**fill, name: value}) if where == "path" else path.format(**fill)
        params = {**query, name: str(value)} if where == "query" else query
        resp = httpx.get(f"{stack.base_url}{url}", params=params, headers=headers, timeout=30)
        assert resp.status_code != 422, (value, resp.text)

    check()


@pytest.mark.parametrize(
    ("user", "path", "params", "code"),
    [
        ("cadre_a", "/api/v1/datasets/residents/records", {"scenario": "dibao_review"}, "invalid_scenario"),
        ("ca_steward", "/api/v1/grants", {"org": "3101511"}, "invalid_org"),
        ("ca_steward", "/api/v1/grants", {"status": "pending"}, "invalid_status"),
        ("supervisor", "/api/v1/supervision/reports", {"org_level": "3"}, None),
        ("rv_civil_affairs", "/api/v1/admission/burden/villages/310151101000", {}, "invalid_village"),
    ],
)
def test_a_value_the_document_refuses_is_refused(
    stack: Stack, user: str, path: str, params: dict[str, str], code: str | None
) -> None:
    """The other direction, for the parameters the server refuses with a 422 (the rest answer 404)."""
    resp = stack.get(f"{stack.base_url}{path}", user, **params)
    assert resp.status_code == 422, resp.text
    if code is not None:
        assert resp.json()["error"] == code
