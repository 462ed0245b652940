"""``/docs`` shows the API documentation with no access to any other host.

FastAPI's page loaded Swagger UI from a public CDN: in a government network that reaches no public host (and
in this test's headless Chromium, which is given no network beyond loopback) the page stayed blank. Now the
gateway serves the files itself; the page must name no other host, and a real browser must render the
document's operations from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.api_docs import DOCS_ASSETS
from tests.browser import chromium
from tests.gateway.test_supervision_report_browser import browser
from tests.stack import Stack, stack_fixture


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_fixture("sqlite", tmp_path_factory)


def test_the_docs_page_loads_only_from_the_gateway(stack: Stack) -> None:
    page = httpx.get(f"{stack.base_url}/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(loaded) == ["/docs/favicon.png", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"]
    assert "http://" not in page.text and "https://" not in page.text
    for name, media_type in DOCS_ASSETS.items():
        asset = httpx.get(f"{stack.base_url}/docs/{name}", timeout=30)
        assert asset.status_code == 200, name
        assert asset.headers["content-type"] == media_type
        assert len(asset.content) > 1000
    # Only those files: nothing else of the package (or the file system) is reachable under /docs/.
    assert httpx.get(f"{stack.base_url}/docs/redoc.standalone.js", timeout=30).status_code == 404
    assert httpx.get(f"{stack.base_url}/docs/..%2Fcore.py", timeout=30).status_code == 404


def test_a_browser_with_no_network_renders_the_operations(stack: Stack, tmp_path: Path) -> None:
    binary = chromium()
    # Every host but the gateway's loopback address is unreachable, as in an isolated network.
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    page = f"{stack.base_url}/docs"
    done = browser(binary, tmp_path, offline, "--virtual-time-budget=15000", "--dump-dom", page)
    dom = done.stdout.decode("utf-8", "replace")
    assert 'class="swagger-ui' in dom, done.stderr.decode("utf-8", "replace")[-2000:]
    assert "Grassroots Data Gateway" in dom
    # Swagger UI drew the operations of the document (OpenAPI 3.1), not an error about its version.
    assert "list_records" in dom or "/api/v1/datasets/{dataset}/records" in dom
    assert "Unable to render this definition" not in dom
