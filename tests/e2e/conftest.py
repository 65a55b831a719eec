"""The gateway the console tests use: an admin token, the built-in echo channel, and a channel with a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import UPSTREAM_SECRET
from tests.fakes.server import serve_in_thread
from tests.fakes.upstream import FakeUpstream
from tokenbridge.app import create_app
from tokenbridge.settings import load_settings

ADMIN_TOKEN = "adm-console-ADMIN-token-do-not-leak-0123456789"

CONSOLE_CONFIG = """
[server]
database = "console.db"
admin_token = "{admin_token}"

[accounts]
registration = "open"
signup_credit_usd = 0.05

[[channels]]
name = "demo"
kind = "echo"
models = ["echo-1"]

[[channels]]
name = "fake"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = ["fake-ok"]

[models."echo-1"]
input = 1.0
output = 2.0

[models."fake-ok"]
input = 1.5
output = 4.0
"""


@dataclass
class ConsoleSite:
    """The real gateway on loopback, and an admin HTTP client for setting up keys as a user would."""

    url: str
    admin: httpx.Client
    config: Path

    def cli_json(self, *args: str) -> Any:
        """What the real CLI says (`--json`) about the same database, as a user would run it."""
        done = subprocess.run(
            [sys.executable, "-m", "tokenbridge", *args, "--json", "--config", str(self.config)],
            capture_output=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout)

    def create_key(self, name: str, credit_usd: str = "1") -> str:
        answer = self.admin.post("/api/keys", json={"name": name, "credit_usd": credit_usd})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["key"])

    def chat(self, secret: str, text: str) -> str:
        body = {"model": "echo-1", "messages": [{"role": "user", "content": text}]}
        answer = httpx.post(f"{self.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["choices"][0]["message"]["content"])


@pytest.fixture(scope="module")
def console_site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    _, upstream_url = upstream
    config = tmp_path_factory.mktemp("console") / "config.toml"
    config.write_text(CONSOLE_CONFIG.format(admin_token=ADMIN_TOKEN, upstream=upstream_url, secret=UPSTREAM_SECRET))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        serve_in_thread(create_app(load_settings(config))) as url,
        httpx.Client(base_url=url, headers=headers) as admin,
    ):
        yield ConsoleSite(url, admin, config)
