"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The gateway and the civil-affairs registry as real processes, on SQLite and (CI) PostgreSQL.

    Module-scoped: tests in one module share the stack, so a test that changes shared state restores it.
    """
    yield from stack_fixture(request.param, tmp_path_factory)
