from __future__ import annotations

import datetime as dt

import pytest

from masking import Catalog, FreeTextScanner, KeyRing, RuleSet, load_catalog, load_rules

KEK = bytes(range(32))
AS_OF = dt.date(2025, 6, 1)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def rules() -> RuleSet:
    return load_rules()


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing.generate(KEK, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))


@pytest.fixture(scope="session")
def scanner() -> FreeTextScanner:
    return FreeTextScanner()
