"""Fixtures shared by every test package."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.stack import Stack, stack_fixture

# Hypothesis fails an example that takes over 200 ms by default: a wall-clock assert, which on a shared
# 2-core machine fails correct code (an example that starts node took 430 ms under load). The examples'
# verdicts are the tests; how long they take is the benchmarks' business.
settings.register_profile("grassroots", deadline=None)
settings.load_profile("grassroots")

# No test reads the working tree's ./var (GRASSROOTS_DATA_DIR's default): after `make demo` it holds the
# demo's database and keys, and a CLI test that looked for "this machine's checkpoint key" found the demo's
# and checked a stand-in's checkpoints with it. Each test process gets an empty directory of its own; tests
# that need a data directory still name theirs.
# Removed when the test process ends, so a run leaves no directory behind in /tmp.
if "GRASSROOTS_DATA_DIR" not in os.environ:
    _DATA_DIR = tempfile.mkdtemp(prefix="grassroots-tests-")
    os.environ["GRASSROOTS_DATA_DIR"] = _DATA_DIR
    atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)

# Every process a test starts (the gateway, the registries, the CLI) runs the code of this checkout, not
# whatever checkout the virtualenv's editable install last pointed at (a second worktree sharing it).
_CHECKOUT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_CHECKOUT, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != _CHECKOUT)]
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The gateway and the civil-affairs registry as real processes, on SQLite and (CI) PostgreSQL.

    Module-scoped: tests in one module share the stack, so a test that changes shared state restores it.
    """
    yield from stack_fixture(request.param, tmp_path_factory)
