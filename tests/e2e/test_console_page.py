"""The console's files as served: security headers, no inline script, no HTML built from data, no secrets."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import UPSTREAM_SECRET
from tests.e2e.conftest import ADMIN_TOKEN, ConsoleSite
from tokenbridge.console import FILES

MODULES = [path for path, (_, media) in FILES.items() if media.startswith("text/javascript")]
PATHS = {path: media.split(";")[0] for path, (_, media) in FILES.items()}


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
    assert scripts == [(' type="module" src="/console/main.js"', "")]
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"
    assert not re.search(r"\sstyle\s*=", html), "no inline styles (CSP style-src 'self')"
    assert "javascript:" not in html


def test_script_never_builds_html_from_strings_or_keeps_tokens_beyond_the_tab(console_site: ConsoleSite) -> None:
    js = {path: httpx.get(console_site.url + path).text for path in MODULES}
    assert len(js) >= 5, "the console is split into modules"
    for path, text in js.items():
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, (path, sink)
        assert "localStorage" not in text and "document.cookie" not in text, path
        imported = re.findall(r'from "\./([a-z]+\.js)"', text)
        assert all(f"/console/{name}" in PATHS for name in imported), (path, imported)  # every import is served
    everything = "".join(js.values())
    assert "sessionStorage" in everything and '"Bearer "' in everything


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
