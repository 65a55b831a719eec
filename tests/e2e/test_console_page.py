"""The console's files as served: security headers, no inline script, no HTML built from data, no secrets."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import UPSTREAM_SECRET
from tests.e2e.conftest import ADMIN_TOKEN, ConsoleSite

PATHS = {
    "/console": "text/html",
    "/console/": "text/html",
    "/console/console.js": "text/javascript",
    "/console/console.css": "text/css",
}


@pytest.mark.parametrize("path", PATHS)
def test_console_files_are_served_with_security_headers(console_site: ConsoleSite, path: str) -> None:
    answer = httpx.get(console_site.url + path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(PATHS[path])
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in answer.headers
    assert httpx.head(console_site.url + path).status_code == 200


def test_the_page_runs_only_its_own_script_file(console_site: ConsoleSite) -> None:
    html = httpx.get(console_site.url + "/console").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts == [(' src="/console/console.js" defer', "")]
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"
    assert not re.search(r"\sstyle\s*=", html), "no inline styles (CSP style-src 'self')"
    assert "javascript:" not in html


def test_script_never_builds_html_from_strings_or_keeps_tokens_beyond_the_tab(console_site: ConsoleSite) -> None:
    js = httpx.get(console_site.url + "/console/console.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert "localStorage" not in js and "document.cookie" not in js
    assert "sessionStorage" in js and '"Bearer "' in js


def test_no_secret_in_any_served_file(console_site: ConsoleSite) -> None:
    secret = console_site.create_key("page-grep")
    for path in PATHS:
        body = httpx.get(console_site.url + path).text
        for leaked in (ADMIN_TOKEN, secret, UPSTREAM_SECRET):
            assert leaked not in body, (path, leaked[:8])


def test_unknown_console_file_is_an_openai_shaped_404(console_site: ConsoleSite) -> None:
    answer = httpx.get(console_site.url + "/console/config.toml")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
