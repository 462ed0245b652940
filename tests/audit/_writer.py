"""Subprocess appender for the crash and concurrency tests: prints each acknowledged receipt.

Usage: python -m tests.audit._writer URL [SCHEMA] COUNT   (COUNT 0 = until killed)
Each line "seq entry_hash_hex" is printed only after the event's transaction committed.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from audit import AuditLog, GroupCommitAppender, configure_sqlite_durability
from tests.audit.helpers import make_event


def main(argv: list[str]) -> None:
    url, schema, count = argv[0], (argv[1] if len(argv) == 3 else ""), int(argv[-1])
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        configure_sqlite_durability(engine)
    else:
        engine = sa.create_engine(url, connect_args={"options": f"-c search_path={schema}"})
    log = AuditLog(engine)
    out = sys.stdout
    i = 0
    with GroupCommitAppender(log, max_batch=64, max_wait_ms=1.0) as appender:
        while count == 0 or i < count:
            # Alternate group commits and direct batches so both paths race each other.
            if i % 2:
                receipts = log.append_many([make_event(i + j) for j in range(3)])
            else:
                futures = [appender.submit(make_event(i + j)) for j in range(8)]
                receipts = [f.result() for f in futures]
            i += len(receipts)
            out.write("".join(f"{r.seq} {r.entry_hash.hex()}\n" for r in receipts))
            out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
