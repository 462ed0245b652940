"""The periodic checkpoint tick: it signs only when the log grew past the latest checkpoint, and reads
the latest checkpoint and the log size once per tick (the writer then reuses them)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
import sqlalchemy as sa

from audit import AuditLog, CheckpointSigner, latest_checkpoint, merkle_root
from audit import checkpoints as checkpoints_module
from gateway.supervision_tasks import checkpoint_if_grown
from tests.audit.conftest import Store, postgres_database, postgres_store, store  # noqa: F401 - fixtures
from tests.audit.helpers import make_event

if TYPE_CHECKING:
    from gateway.runtime import Runtime


class _Reads:
    """How often one tick listed the checkpoint directory and asked the log for its size."""

    def __init__(self, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.listings = 0
        self.sizes = 0
        real = checkpoints_module._checkpoint_files

        def listing(directory: Path) -> Any:
            self.listings += 1
            return real(directory)

        def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if "max(audit_events.seq)" in sql:
                self.sizes += 1

        monkeypatch.setattr(checkpoints_module, "_checkpoint_files", listing)
        sa.event.listen(engine, "before_cursor_execute", statement)

    def take(self) -> tuple[int, int]:
        taken = (self.listings, self.sizes)
        self.listings = self.sizes = 0
        return taken


def test_a_tick_signs_only_when_the_log_grew_reading_each_input_once(
    store: Store,  # noqa: F811 - the audit store fixture (SQLite, and PostgreSQL when configured)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "checkpoints"
    runtime = cast("Runtime", SimpleNamespace(engine=store.engine, settings=SimpleNamespace(
        effective_checkpoint_dir=directory)))  # fmt: skip
    signer = CheckpointSigner.generate()
    log = AuditLog(store.engine)
    reads = _Reads(store.engine, monkeypatch)

    log.append_many([make_event(i) for i in range(5)])
    reads.take()
    written = checkpoint_if_grown(runtime, signer)
    assert written is not None and written[0] == 5
    assert reads.take() == (1, 1)

    # Nothing appended since: no new checkpoint, and no walk.
    assert checkpoint_if_grown(runtime, signer, written[1]) is None
    assert reads.take() == (1, 1)
    assert len(list(directory.glob("checkpoint-*.json"))) == 1

    log.append_many([make_event(i) for i in range(5, 8)])
    reads.take()
    grown = checkpoint_if_grown(runtime, signer, written[1])
    assert grown is not None and grown[0] == 8
    assert reads.take() == (1, 1)
    latest = latest_checkpoint(directory, signer.public_key)
    assert latest is not None and latest.tree_size == 8
    assert latest.root_hash == merkle_root([log.read(seq)[2] for seq in range(1, 9)])
    assert len(list(directory.glob("checkpoint-*.json"))) == 2
