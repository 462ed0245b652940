"""One division-code parser for every library and the gateway: the libraries accept and refuse alike."""

from __future__ import annotations

import pytest

from audit import org_prefix
from grassroots_common.divisions import is_division_code
from policies import divisions

#: (code, a division code?) — the table the API and CLI tests share.
CODES: list[tuple[str, bool]] = [
    ("31", True),
    ("3101", True),
    ("310151", True),
    ("310151101", True),
    ("310151101201", True),
    ("000000000000", True),  # the national root
    ("441900003000", True),  # 东莞: no county segment, townships below the city
    ("31015", False),
    ("3101511012011", False),
    ("", False),
    ("abc", False),
    ("３１０１５１", False),  # full-width digits
    ("٣١٠١", False),  # Arabic-Indic digits
    ("001234", False),  # province 00 but not the root
    ("000000000001", False),
    ("310151101201-G01", False),  # a micro-grid is not an organisation
    ("310151 ", False),
]


@pytest.mark.parametrize(("code", "valid"), CODES)
def test_policies_and_audit_accept_and_refuse_the_same_codes(code: str, valid: bool) -> None:
    assert is_division_code(code) is valid
    assert divisions.is_valid(code) is valid
    if valid:
        assert org_prefix(code) == divisions.significant(code)
    else:
        with pytest.raises(ValueError):
            org_prefix(code)
