"""A stand-in OpenID provider for the verifier tests, run as its own process (stdlib only).

It serves files from a directory, so a test publishes a discovery document or swaps a key set by
writing files (atomically, with os.replace). Every directory under the root is one "tenant" issuer,
``http://127.0.0.1:PORT/<tenant>``, so tests share one process without sharing state.

* ``GET /_requests`` answers ``{path: count}`` for every path served so far (rate-limit tests).
* A sidecar file ``<file>.delay`` holds seconds to wait before answering (timeout tests);
  ``<file>.status`` holds an HTTP status to answer instead of the file (outage tests);
  ``<file>.headers`` holds a JSON object of further response headers (``Cache-Control``, ``Age``...).

Usage: ``python idp_server.py ROOT``; prints the port on the first line of stdout, and exits when its
stdin closes, so it never outlives the test run that started it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

_counts: dict[str, int] = {}
_counts_lock = threading.Lock()


class _Handler(SimpleHTTPRequestHandler):
    _extra_headers: Mapping[str, str] = MappingProxyType({})

    def do_GET(self) -> None:
        self._extra_headers = {}
        path = self.path.split("?", 1)[0]
        if path == "/_requests":
            with _counts_lock:
                body = json.dumps(_counts).encode()
            self._answer(200, body)
            return
        with _counts_lock:
            _counts[path] = _counts.get(path, 0) + 1
        target = Path(self.translate_path(path))
        delay = target.with_name(target.name + ".delay")
        if delay.is_file():
            time.sleep(float(delay.read_text()))
        status = target.with_name(target.name + ".status")
        if status.is_file():
            self._answer(int(status.read_text()), b'{"error": "simulated outage"}')
            return
        headers = target.with_name(target.name + ".headers")
        if headers.is_file():
            self._extra_headers = json.loads(headers.read_text())
        super().do_GET()

    def end_headers(self) -> None:
        for name, value in self._extra_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    root = sys.argv[1]

    def handler(*args: Any, **kwargs: Any) -> _Handler:
        return _Handler(*args, directory=root, **kwargs)

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
