"""An archive round killed mid-write (SIGKILL: no cleanup runs) never blocks the month for good, and a
later round never loses a signed archive or the events it covers.

Each archive file is written under a temporary name, fsynced and linked into place, the signed manifest
last: a later round removes temporary files, sets aside (never deletes) an events file that no manifest
signs, adopts a complete signed archive that verifies against the live log, and refuses, touching nothing,
a signed manifest that does not verify."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from audit import ArchiveResult, CheckpointSigner, KeyChain, list_archives, verify_archive
from gateway.supervision_tasks import archive_closed_months
from tests.audit.conftest import (  # noqa: F401 - fixtures
    Store,
    postgres_database,
    postgres_store,
    sqlite,
    store,
)
from tests.gateway.test_supervision_tasks import NOW, _archive_records, _log_october_and_november
from tests.stack import REPO

STEM = "audit-2026-10-1-6"


def _killed_round(target: Store, key_file: Path, directory: Path, point: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.gateway._archive_crash",
            target.url,
            target.schema or "-",
            str(key_file),
            str(directory),
            point,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])


def _next_round(target: Store, signer: CheckpointSigner, directory: Path) -> list[ArchiveResult]:
    """The next round. On PostgreSQL the killed process's advisory lock goes when its server process sees
    the connection closed, a moment after the kill: until then a round finds the lock held (None)."""
    deadline = time.monotonic() + 30
    while (written := archive_closed_months(target.engine, signer, directory, NOW)) is None:
        assert time.monotonic() < deadline, "the killed round's archiving lock was never released"
        time.sleep(0.1)
    return written


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file())


@pytest.mark.parametrize(
    ("point", "left_behind"),
    [
        ("writing-events", [f".{STEM}.jsonl.gz.*.tmp"]),
        ("events-placed", [f"{STEM}.jsonl.gz"]),
        ("manifest-written", [f".{STEM}.manifest.json.*.tmp", f"{STEM}.jsonl.gz"]),
        ("archive-placed", [f"{STEM}.jsonl.gz", f"{STEM}.manifest.json"]),
    ],
)
def test_the_round_after_a_killed_one_archives_the_month_and_it_verifies(
    store: Store,  # noqa: F811 - the audit store fixture (SQLite, and PostgreSQL when configured)
    tmp_path: Path,
    point: str,
    left_behind: list[str],
) -> None:
    _log_october_and_november(store)
    key_file, directory = tmp_path / "checkpoint.pem", tmp_path / "archives"
    signer = CheckpointSigner.load_or_create(key_file)
    _killed_round(store, key_file, directory, point)
    found = _files(directory)
    assert len(found) == len(left_behind) and all(
        Path(name).match(pattern) for name, pattern in zip(found, left_behind, strict=True)
    ), found
    before = {name: (directory / name).read_bytes() for name in found if not name.endswith(".tmp")}

    written = _next_round(store, signer, directory)

    assert [(r.month, r.first_seq, r.last_seq) for r in written] == [("2026-10", 1, 6)]
    # No temporary file is left, and exactly one archive of October is in the directory.
    assert _files(directory) == [f"{STEM}.jsonl.gz", f"{STEM}.manifest.json"]
    verdict = verify_archive(written[0].manifest_file, KeyChain.pinned(signer.public_key), store.engine)
    assert verdict.ok and verdict.checked == 6, verdict
    with Session(store.engine) as session:
        assert [a["archive_id"] for a in list_archives(session)] == [STEM]
    ((_, _, details),) = _archive_records(store)
    if point == "archive-placed":
        # The signed archive the killed round wrote is the one kept and indexed, byte for byte.
        assert written[0].recovered and details["recovered"] is True
        assert {name: (directory / name).read_bytes() for name in before} == before
    else:
        assert not written[0].recovered and "recovered" not in details
    if point in ("events-placed", "manifest-written"):
        # The unsigned events file was set aside, not deleted.
        (aside,) = (directory / "interrupted").iterdir()
        assert aside.name.startswith(f"{STEM}.jsonl.gz.") and aside.read_bytes() == before[f"{STEM}.jsonl.gz"]
    else:
        assert not (directory / "interrupted").exists()
    # And the month is done: the next round has nothing to do.
    assert archive_closed_months(store.engine, signer, directory, NOW) == []


def _killed_before_indexing(target: Store, tmp_path: Path) -> tuple[CheckpointSigner, Path]:
    """October's archive written whole by a round killed before it indexed it; the key and directory."""
    _log_october_and_november(target)
    key_file, directory = tmp_path / "checkpoint.pem", tmp_path / "archives"
    _killed_round(target, key_file, directory, "archive-placed")
    return CheckpointSigner.load_or_create(key_file), directory


def _resign(path: Path, signer: CheckpointSigner, **changes: object) -> None:
    from audit.archive import _manifest_payload

    manifest = {**json.loads(path.read_bytes()), **changes, "key_id": signer.key_id}
    manifest["signature"] = base64.b64encode(signer.sign_payload(_manifest_payload(manifest))).decode()
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["events-file-altered", "signed-with-another-key", "other-range"])
def test_a_signed_archive_that_does_not_verify_is_never_overwritten_and_the_month_waits(
    sqlite: Store,  # noqa: F811 - the SQLite store fixture
    tmp_path: Path,
    damage: str,
) -> None:
    signer, directory = _killed_before_indexing(sqlite, tmp_path)
    events, manifest = directory / f"{STEM}.jsonl.gz", directory / f"{STEM}.manifest.json"
    if damage == "events-file-altered":
        events.write_bytes(events.read_bytes()[:-8] + b"\0" * 8)
    elif damage == "signed-with-another-key":
        _resign(manifest, CheckpointSigner.generate())
    else:
        _resign(manifest, signer, last_seq=5)
    before = {p.name: p.read_bytes() for p in (events, manifest)}

    assert _next_round(sqlite, signer, directory) == []

    assert {p.name: p.read_bytes() for p in (events, manifest)} == before
    assert _files(directory) == sorted(before)
    assert _archive_records(sqlite) == []
    # Once an operator has moved the files out (they were kept), the month is archived again.
    kept = tmp_path / "kept"
    kept.mkdir()
    for p in (events, manifest):
        p.rename(kept / p.name)
    written = archive_closed_months(sqlite.engine, signer, directory, NOW)
    assert written is not None and [r.month for r in written] == ["2026-10"]
    assert verify_archive(written[0].manifest_file, KeyChain.pinned(signer.public_key), sqlite.engine).ok


def test_a_manifest_cut_short_by_an_older_version_is_set_aside_and_the_month_archived(
    sqlite: Store,  # noqa: F811 - the SQLite store fixture
    tmp_path: Path,
) -> None:
    """Earlier versions wrote the manifest in place: a kill could leave half of it, which signs nothing."""
    signer, directory = _killed_before_indexing(sqlite, tmp_path)
    manifest = directory / f"{STEM}.manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])

    written = _next_round(sqlite, signer, directory)

    assert [r.month for r in written] == ["2026-10"]
    assert verify_archive(written[0].manifest_file, KeyChain.pinned(signer.public_key), sqlite.engine).ok
    aside = sorted(p.name for p in (directory / "interrupted").iterdir())
    assert [name.rsplit(".", 1)[0] for name in aside] == [f"{STEM}.jsonl.gz", f"{STEM}.manifest.json"]
