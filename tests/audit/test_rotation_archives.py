"""Archive manifests and prune anchors across a checkpoint key rotation: each counts when signed by the key
the chain says was in office for its tree size (:meth:`audit.KeyChain.key_for`); a key outside the chain,
an old key signing past its handover and a new key signing before it are forgeries."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from audit import (
    AnchorError,
    ArchiveError,
    AuditLog,
    CheckpointSigner,
    KeyChain,
    archive_month,
    key_chain,
    plan_prune,
    prune,
    record_archive,
    rotate_signing_key,
    verify_archive,
    verify_archived_prefix,
    verify_log,
    write_checkpoint,
)
from audit.anchor import latest_anchor
from audit.canonical import canonical_json
from tests.audit.conftest import Store
from tests.audit.helpers import make_event
from tests.audit.test_prune import FEB, JAN, LATER, MAR


@dataclasses.dataclass
class Rotated:
    """January archived and pruned under K1, February archived under K1, then K1 handed over to K2."""

    store: Store
    old: CheckpointSigner
    new: CheckpointSigner
    handover_size: int
    archives: Path
    checkpoints: Path
    jan: Path
    feb: Path

    def keys(self, pinned: CheckpointSigner | None = None) -> KeyChain:
        return key_chain(self.checkpoints, (pinned or self.new).public_key)


def _archive(store: Store, signer: CheckpointSigner, directory: Path, month: str) -> Path:
    result = archive_month(store.engine, signer, directory, month)
    with Session(store.engine) as session:
        record_archive(session, result, "auditor", LATER)
        session.commit()
    return result.manifest_file


@pytest.fixture
def rotated(sqlite: Store, tmp_path: Path) -> Rotated:
    log = AuditLog(sqlite.engine)
    for start, month in ((0, JAN), (10, FEB), (20, MAR)):
        log.append_many(
            make_event(i, occurred_at=month + timedelta(minutes=i)) for i in range(start, start + 10)
        )
    key_path, checkpoints, archives = tmp_path / "key.pem", tmp_path / "checkpoints", tmp_path / "archives"
    old = CheckpointSigner.load_or_create(key_path)
    write_checkpoint(sqlite.engine, old, checkpoints)
    jan, feb = (_archive(sqlite, old, archives, m) for m in ("2026-01", "2026-02"))
    prune(sqlite.engine, old, archives, checkpoints, actor="auditor", now=LATER, through_month="2026-01")
    _, new, handover = rotate_signing_key(sqlite.engine, key_path, checkpoints)
    return Rotated(sqlite, old, new, handover.tree_size, archives, checkpoints, jan, feb)


def test_what_the_old_key_signed_in_office_counts_from_either_end_of_the_chain(rotated: Rotated) -> None:
    engine = rotated.store.engine
    for pinned in (rotated.old, rotated.new):
        for manifest in (rotated.jan, rotated.feb):
            verdict = verify_archive(manifest, rotated.keys(pinned), engine)
            assert verdict.ok, verdict.problem
        prefix = verify_archived_prefix(engine, rotated.archives, pinned.public_key, rotated.checkpoints)
        assert prefix.ok and prefix.pruned_through == 10, prefix.problem
        assert plan_prune(engine, rotated.archives, rotated.keys(pinned), LATER).through_seq == 20
    # The key file's key alone (no handovers read) still refuses the old key's signatures: fail closed.
    alone = verify_archive(rotated.jan, KeyChain.pinned(rotated.new.public_key), engine)
    assert not alone.ok and "archive manifest signed by key" in str(alone.problem)
    # Pruning on under the new key: its anchor continues the old key's; the whole log verifies.
    done = prune(engine, rotated.new, rotated.archives, rotated.checkpoints, actor="auditor", now=LATER)
    assert done.anchor.key_id == rotated.new.key_id and done.anchor.previous is not None
    assert verify_log(engine, rotated.checkpoints, rotated.old.public_key).ok
    assert verify_archived_prefix(engine, rotated.archives, rotated.old.public_key, rotated.checkpoints).ok


def _resign(manifest_path: Path, signer: CheckpointSigner, **changes: Any) -> None:
    """Rewrite a manifest as a key holder could: fields changed, key id set, signed again."""
    manifest = json.loads(manifest_path.read_bytes())
    manifest.update(changes, key_id=signer.key_id)
    unsigned = canonical_json({k: v for k, v in manifest.items() if k != "signature"})
    manifest["signature"] = base64.b64encode(signer.sign_payload(unsigned)).decode()
    manifest_path.write_bytes(canonical_json(manifest) + b"\n")


@pytest.mark.parametrize(
    ("forger", "tree_size", "expected"),
    [
        # A key nobody handed over to, whatever size it claims.
        ("unrelated", None, "archive manifest signed by key ed25519:"),
        # The old key (kept by a thief) past its handover.
        ("old", +1, "which signs only tree sizes 0..{S} "),
        # The new key, dating an archive to before it came into office.
        ("new", -1, "which signs only tree sizes {S}.. "),
    ],
)
def test_a_manifest_signed_outside_the_chain_or_out_of_office_is_refused(
    rotated: Rotated, forger: str, tree_size: int | None, expected: str
) -> None:
    signer = {"unrelated": CheckpointSigner.generate(), "old": rotated.old, "new": rotated.new}[forger]
    size = {} if tree_size is None else {"tree_size": rotated.handover_size + tree_size}
    _resign(rotated.feb, signer, **size)
    for pinned in (rotated.old, rotated.new):
        verdict = verify_archive(rotated.feb, rotated.keys(pinned))
        assert not verdict.ok
        assert expected.format(S=rotated.handover_size) in str(verdict.problem), verdict.problem
        assert verdict.problem_zh is not None and "归档清单" in verdict.problem_zh
    plan = plan_prune(rotated.store.engine, rotated.archives, rotated.keys(), LATER)
    assert plan.through_seq is None and plan.reasons[0].startswith("archive_invalid")


def _forged_anchor(
    rotated: Rotated, checkpoint_by: CheckpointSigner, size: int, anchor_by: CheckpointSigner
) -> Any:
    """The stored anchor, re-made around a checkpoint of ``size`` and re-signed (as a key holder could)."""
    anchor = latest_anchor(rotated.store.engine)
    assert anchor is not None
    embedded = checkpoint_by.sign(size, bytes(32)).to_json()
    unsigned = dataclasses.replace(
        anchor,
        checkpoint={k: v for k, v in embedded.items() if k not in ("origin", "v")},
        key_id=anchor_by.key_id,
    )
    return dataclasses.replace(unsigned, signature=anchor_by.sign_payload(unsigned.signed_payload()))


Forgery = Callable[[Rotated], tuple[CheckpointSigner, int, CheckpointSigner]]


@pytest.mark.parametrize(
    ("forgery", "expected"),
    [
        # As pruning signs it (one key, at a size it held office): it counts, either side of the handover.
        (lambda r: (r.old, r.handover_size, r.old), None),
        (lambda r: (r.new, r.handover_size + 3, r.new), None),
        # The old key after its handover, on the anchor and on the checkpoint it embeds.
        (lambda r: (r.old, r.handover_size + 1, r.old), "checkpoint of tree size"),
        # A new checkpoint, but the anchor itself signed by the retired key.
        (lambda r: (r.new, r.handover_size + 1, r.old), "prune anchor of tree size"),
        # The new key dating the anchor before its period.
        (lambda r: (r.old, r.handover_size - 1, r.new), "prune anchor of tree size"),
        # A key outside the chain.
        (lambda r: (r.new, r.handover_size + 1, CheckpointSigner.generate()), "prune anchor signed by key"),
    ],
)
def test_an_anchor_counts_only_when_signed_by_the_key_in_office_at_its_checkpoint(
    rotated: Rotated, forgery: Forgery, expected: str | None
) -> None:
    anchor = _forged_anchor(rotated, *forgery(rotated))
    for pinned in (rotated.old, rotated.new):
        if expected is None:
            rotated.keys(pinned).verify_anchor(anchor)
        else:
            with pytest.raises(AnchorError, match=expected):
                rotated.keys(pinned).verify_anchor(anchor)


def test_a_gateway_still_on_the_retired_key_archives_nothing(rotated: Rotated) -> None:
    """Its manifest would be signed past the old key's handover, refused by every verifier (and pruning would
    stop at that month): refused before any file is written, saying which key file to copy."""
    engine = rotated.store.engine
    with pytest.raises(ArchiveError, match="retired by a handover at tree size") as refused:
        archive_month(engine, rotated.old, rotated.archives, "2026-03", checkpoint_dir=rotated.checkpoints)
    assert "请从执行轮换的主机把新的密钥文件" in refused.value.message_zh
    assert not list(rotated.archives.glob("audit-2026-03-*"))
    written = archive_month(
        engine, rotated.new, rotated.archives, "2026-03", checkpoint_dir=rotated.checkpoints
    )
    assert verify_archive(written.manifest_file, rotated.keys(rotated.old), engine).ok
