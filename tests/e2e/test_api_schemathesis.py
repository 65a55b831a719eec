"""schemathesis against the real gateway's /api/openapi.json (issue 11, item 20 and acceptance 3).

Every operation of the document is called with generated requests, schema-valid and schema-violating,
and every check schemathesis has is run on the answers: a valid request refused, an invalid one
accepted, an answer that does not match its documented schema, a 405 whose `Allow` header disagrees
with the document, a 5xx. Bounded: a fixed seed, deterministic generation and a few examples per
operation, so a CI run takes seconds and fails the same way each time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ADMIN_TOKEN, Gateway

MAX_EXAMPLES = 20


def schemathesis(gateway: Gateway, token: str, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{gateway.url}/api/openapi.json",
        "--header", f"Authorization: Bearer {token}", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
        "--seed", "11", "--generation-deterministic", "--no-color",
        "--request-timeout", "20", *options,
    ]  # fmt: skip
    # cwd: schemathesis leaves a cache folder there, which is no part of the repository.
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=workdir)


def test_account_api_agrees_with_its_openapi_document_for_the_admin(admin_gateway: Gateway, tmp_path: Path) -> None:
    admin_gateway.create_key("schema-holder")  # a second key for the admin to page through, edit and credit
    done = schemathesis(admin_gateway, ADMIN_TOKEN, tmp_path, "--exclude-path-regex", "^/v1/")
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-5000:]


def test_account_api_agrees_with_its_openapi_document_for_a_key_holder(admin_gateway: Gateway, tmp_path: Path) -> None:
    secret = admin_gateway.create_key("schema-self", credit_usd="5")  # /v1/me and billing answer it; writes 403
    done = schemathesis(admin_gateway, secret, tmp_path)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]


def test_account_api_405_allow_lists_every_method_of_the_path_and_head_answers(admin_gateway: Gateway) -> None:
    for path, methods in [("/api/keys", {"GET", "POST"}), ("/api/keys/nobody", {"GET", "PATCH"})]:
        refused = admin_gateway.api("DELETE", path)
        assert refused.status_code == 405 and refused.json()["error"]["code"] == "method_not_allowed"
        assert methods <= {m.strip() for m in refused.headers["allow"].split(",")}, refused.headers["allow"]
    assert admin_gateway.api("HEAD", "/api/keys").status_code == 200  # GET's, without the body
