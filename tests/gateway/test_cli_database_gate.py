"""Commands that need the current schema refuse an unmigrated database the same way: Chinese first, then
English, naming `grassroots db upgrade`, exit 2, no traceback, and nothing created in the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli import app as grassroots
from gateway.db import head_revision, upgrade

runner = CliRunner()


def _run(data_dir: Path, *args: str) -> Result:
    env = {
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_DATABASE_URL": None,
        "GRASSROOTS_OIDC_ISSUER": None,
        "GRASSROOTS_MODE": None,
    }
    return runner.invoke(grassroots, list(args), env=env)


def _assert_refused_as_unmigrated(result: Result, revision: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    zh, en = result.stderr.splitlines()
    assert zh.startswith("数据库尚未迁移到当前版本") and "`grassroots db upgrade`" in zh
    assert en.startswith(f"The database schema is at revision {revision}, the code needs {head_revision()}")
    assert "`grassroots db upgrade`" in en
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "command",
    [
        ["seed-demo"],
        ["serve", "--port", "1"],
    ],
)
def test_a_fresh_data_directory_is_refused_and_left_as_it_was(tmp_path: Path, command: list[str]) -> None:
    fresh = tmp_path / "fresh"
    result = _run(fresh, *command)
    _assert_refused_as_unmigrated(result, "none")
    # No gateway.db, no keys, no registry credential files: nothing to clean up before `db upgrade`.
    assert not fresh.exists() or list(fresh.rglob("*")) == []


def test_seed_demo_refuses_a_database_behind_the_code_and_seeds_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'gateway.db'}"
    upgrade(url, "base")  # the file exists, no revision yet
    before = sorted(p.name for p in data_dir.rglob("*"))
    result = _run(data_dir, "seed-demo")
    _assert_refused_as_unmigrated(result, "none")
    after = sorted(p.name for p in data_dir.rglob("*") if not p.name.endswith(("-wal", "-shm")))
    assert after == before  # no keys/, no *.gateway-credentials, no seeded rows' side files


def test_seed_demo_on_a_migrated_database_still_seeds(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    upgrade(f"sqlite:///{data_dir / 'gateway.db'}")
    result = _run(data_dir, "seed-demo")
    assert result.exit_code == 0, result.stderr
    assert "civil-affairs-registry approved" in result.stdout
