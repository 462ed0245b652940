"""A gateway process whose periodic archive round is killed (SIGKILL, no cleanup runs) at one point of
writing a month's archive; run by tests/gateway/test_archive_interrupted.py.

    python -m tests.gateway._archive_crash <database url> <schema or -> <key file> <archive dir> <point>
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa

from audit import CheckpointSigner
from audit import archive as archive_module
from gateway import supervision_tasks
from tests.gateway.test_supervision_tasks import NOW


def _die() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def main() -> None:
    url, schema, key_file, directory, point = sys.argv[1:]
    options = {} if schema == "-" else {"connect_args": {"options": f"-c search_path={schema}"}}
    engine = sa.create_engine(url, **options)  # type: ignore[arg-type]
    signer = CheckpointSigner.load_or_create(Path(key_file))

    if point == "writing-events":  # half the events are in the temporary file
        real_rows = archive_module._rows

        def rows(*args: Any) -> Iterator[Any]:
            for n, row in enumerate(real_rows(*args)):
                if n == 3:
                    _die()
                yield row

        archive_module._rows = rows  # type: ignore[assignment]
    elif point == "events-placed":  # the events file is in place, no manifest yet
        archive_module._tree_root = lambda *args: _die()
    elif point == "manifest-written":  # the signed manifest is in its temporary file, not yet in place
        real_link = os.link
        links = []

        def link(source: Any, target: Any) -> None:
            links.append(target)
            if len(links) == 2:
                _die()
            real_link(source, target)

        archive_module.os.link = link  # type: ignore[assignment]
    elif point == "archive-placed":  # both files in place, the archive not yet indexed nor recorded
        supervision_tasks._record = lambda *args: _die()
    else:
        raise SystemExit(f"unknown point {point}")
    supervision_tasks.archive_closed_months(engine, signer, Path(directory), NOW)
    raise SystemExit("the round ended without being killed")


if __name__ == "__main__":
    main()
