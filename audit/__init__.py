"""Audit: a tamper-evident record of every data access and administrative act.

RFC 8785 canonical event bodies, a SHA-256 hash chain, an RFC 6962 Merkle tree with Ed25519-signed
checkpoints kept outside the database, and durable group-committed appends — the processing records
PIPL Art. 56 requires, with residents present only as keyed HMAC refs.

A library: it imports neither the gateway nor any other library of this project.
"""

from audit.appender import GroupCommitAppender
from audit.canonical import canonical_json
from audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    latest_checkpoint,
    list_checkpoints,
    load_public_key,
    verify_checkpoint,
    write_checkpoint,
)
from audit.events import AuditEvent, Outcome, looks_like_personal_data
from audit.log import (
    AppendReceipt,
    AuditIntegrityError,
    AuditLog,
    AuditUnavailable,
    configure_sqlite_durability,
)
from audit.merkle import (
    InvalidProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from audit.pseudonym import Pseudonymizer, is_ref, normalise_id_number
from audit.tables import install_immutability_sql, metadata, postgres_writer_role_sql
from audit.verify import VerificationReport, verify_log

__all__ = [
    "AppendReceipt",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditLog",
    "AuditUnavailable",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "GroupCommitAppender",
    "InvalidProofError",
    "Outcome",
    "Pseudonymizer",
    "VerificationReport",
    "canonical_json",
    "configure_sqlite_durability",
    "consistency_proof",
    "inclusion_proof",
    "install_immutability_sql",
    "is_ref",
    "latest_checkpoint",
    "leaf_hash",
    "list_checkpoints",
    "load_public_key",
    "looks_like_personal_data",
    "merkle_root",
    "metadata",
    "node_hash",
    "normalise_id_number",
    "postgres_writer_role_sql",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
    "write_checkpoint",
]
