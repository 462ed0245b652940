"""What ``grassroots serve --workers 2`` writes to its log: one line per record, each with the time, the
level, the process it came from, and, for the product's own records, the logger; INFO records of the
product are there at the default GRASSROOTS_LOG_LEVEL.

Before, uvicorn's lines had no time or process, and the product's went through Python's last-resort
handler: its warnings as bare text (which worker? when? how bad?), its INFO records (a periodic checkpoint
written) not at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.launch import start_gateway, stop
from tests.stack import REPO, free_port

_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} (?P<level>[A-Z]+): +\[(?P<pid>\d+)\] (?P<text>.*)$"
)


def _lines(log: Path) -> list[re.Match[str]]:
    text = log.read_text(encoding="utf-8")
    matched = [_LINE.match(line) for line in text.splitlines()]
    assert all(matched), f"lines without time, level or process:\n{text}"
    return [m for m in matched if m is not None]


def test_every_line_says_when_how_bad_and_which_worker(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(tmp_path / "var"),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_CHECKPOINT_INTERVAL_S": "0.5",
    }
    env.pop("GRASSROOTS_LOG_LEVEL", None)  # the default, INFO
    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "db", "upgrade"], env=env, cwd=tmp_path, check=True, timeout=120
    )
    port, log = free_port(), tmp_path / "serve.log"
    gateway = start_gateway(port=port, env=env, cwd=tmp_path, workers=2, stderr=log, stdout=log)
    try:
        # A request without a token is recorded in the audit log, so the log grows and a worker signs a
        # periodic checkpoint: an INFO record of the product's own.
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=10).status_code == 401
        deadline = time.monotonic() + 30
        while "periodic audit checkpoint written" not in log.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.2)
    finally:
        stop(gateway)
    lines = _lines(log)
    started = {m["pid"] for m in lines if m["text"] == "Application startup complete."}
    assert len(started) == 2 and str(gateway.pid) not in started  # told apart: the two workers
    checkpoint = next(m for m in lines if "periodic audit checkpoint written" in m["text"])
    assert checkpoint["level"] == "INFO" and checkpoint["pid"] in started
    assert checkpoint["text"].startswith("gateway.supervision: periodic audit checkpoint written: ")
    # Both workers drained and stopped cleanly on SIGTERM.
    assert {m["pid"] for m in lines if m["text"] == "Application shutdown complete."} == started
