"""Shared fixtures: a fake upstream (real uvicorn), and the real gateway on loopback with a temp SQLite file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.fakes.server import serve_in_thread
from tests.fakes.upstream import FakeUpstream
from tokenbridge.app import create_app
from tokenbridge.money import to_nano
from tokenbridge.settings import load_settings
from tokenbridge.store.db import Database
from tokenbridge.store.keys import get_key_by_name, insert_key_with_account
from tokenbridge.store.ledger import count_holds, get_ledger_sum
from tokenbridge.store.usage import list_usage
from tokenbridge.wire import HTTP_PROTOCOL

UPSTREAM_SECRET = "sk-upstream-SECRET-do-not-leak-0123456789"
ADMIN_TOKEN = "admin-SECRET-token-do-not-leak-9876543210"
FAKE_MODELS = [
    "fake-ok", "fake-hold", "fake-400", "fake-500", "fake-cached", "fake-nousage", "fake-nodone", "fake-break",
    "fake-huge", "public-mapped", "fake-garbage", "fake-unterminated", "fake-sized-sse",
    "fake-toolcall",
]  # fmt: skip
FAKE_MODELS += ["fake-cr", "fake-twousage", "fake-baddelta"]  # stream quirks (tests/fakes/upstream.py)

FAKE_MODELS += ["fake-usage-2p63", "fake-usage-9e18"]  # usage past any one request (issue 11, items 2 and 3)
FAKE_MODELS += ["fake-tools"]  # chat tool round trips, for /v1/responses over chat (tests/fakes/responses.py)
# /v1/responses passed through, to the fake's native /responses (tests/fakes/responses.py)
NATIVE_RESPONSES_MODELS = [
    "fake-resp-ok", "fake-resp-nousage", "fake-resp-incomplete", "fake-resp-cut", "fake-resp-hold", "fake-resp-tool",
]  # fmt: skip

CONFIG = """
[server]
database = "gateway.db"
max_body_bytes = {max_body_bytes}

[[channels]]
name = "fake"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = {models}
model_map = {{ "public-mapped" = "fake-ok" }}

[[channels]]
name = "native"
base_url = "{upstream}/v1"
models = ["fake-native"]
completions = "native"

[[channels]]
name = "native-responses"
base_url = "{upstream}/v1"
models = {responses_models}
responses = "native"

[[channels]]
name = "demo"
kind = "echo"
models = ["echo-1"]

[models."echo-1"]
input = 1.0
output = 2.0

{prices}

[groups.default]
multiplier = 1.0

[groups.gold]
multiplier = 0.8
"""

# USD per 1M tokens; distinct values so each term of the formula shows in a cost.
PRICE = {"input": "1.5", "output": "4.0", "cached_input": "0.5"}


def config_text(upstream: str, *, admin_token: str = "", max_body_bytes: int = 65536) -> str:
    prices = "\n".join(
        f'[models."{m}"]\n' + "".join(f"{term} = {value}\n" for term, value in PRICE.items())
        for m in [*FAKE_MODELS, "fake-native", *NATIVE_RESPONSES_MODELS]
    )
    models = "[" + ", ".join(f'"{m}"' for m in FAKE_MODELS) + "]"
    text = CONFIG.format(
        upstream=upstream,
        secret=UPSTREAM_SECRET,
        models=models,
        prices=prices,
        max_body_bytes=max_body_bytes,
        responses_models="[" + ", ".join(f'"{m}"' for m in NATIVE_RESPONSES_MODELS) + "]",
    )
    return text.replace("[server]\n", f'[server]\nadmin_token = "{admin_token}"\n', 1)


@pytest.fixture(scope="session")
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream()
    with serve_in_thread(fake) as url:
        yield fake, url


CHUNKS_RETURNED_S = 30.0  # for an idle gateway's chunks to be returned: a cap, never waited out


@dataclass
class Gateway:
    """The real gateway serving on loopback, plus ways to look into its store as the CLI would."""

    url: str
    config: Path
    fake: FakeUpstream
    clients: list[OpenAI] = field(default_factory=list)  # closed at teardown: no socket left to the GC

    def db_run(self, work: Any) -> Any:
        async def run() -> Any:
            db = await Database.open(load_settings(self.config).server.database)
            try:
                return await work(db)
            finally:
                await db.close()

        return asyncio.run(run())

    def holds_returned(self, within_s: float = CHUNKS_RETURNED_S) -> int:
        """Open holds once the gateway's chunks had time to go back (purse.IDLE_RETURN_S when idle):
        a wallet with room for many requests keeps spare room drawn until then. A generous cap, polled."""
        deadline = time.monotonic() + within_s
        while (held := int(self.db_run(count_holds))) and time.monotonic() < deadline:
            time.sleep(0.05)
        return held

    def create_key(self, name: str, credit_usd: str = "1", **kwargs: Any) -> str:
        _, secret = self.db_run(lambda db: insert_key_with_account(db, name=name, credit=to_nano(credit_usd), **kwargs))
        return str(secret)

    def client(self, key: str, **kwargs: Any) -> OpenAI:
        client = OpenAI(api_key=key, base_url=self.url + "/v1", max_retries=0, timeout=20, **kwargs)
        self.clients.append(client)
        return client

    def balance(self, name: str) -> int:
        key = self.db_run(lambda db: get_key_by_name(db, name))
        return int(key.balance)

    def ledger_sum(self, name: str) -> int:
        async def work(db: Database) -> int:
            key = await get_key_by_name(db, name)
            assert key is not None
            return await get_ledger_sum(db, key.account_id)

        return int(self.db_run(work))

    def usage(self, key: str) -> list[dict[str, Any]]:
        return list(self.db_run(lambda db: list_usage(db, key=key)))

    def api(
        self,
        method: str,
        path: str,
        *,
        token: str | None = ADMIN_TOKEN,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One call to the gateway's own HTTP API (admin or self-service) with `token` as the bearer."""
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token is not None else {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=20, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this gateway's config, as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "tokenbridge", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )


def serve_config(
    text: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream, **app_options: Any
) -> Iterator[Gateway]:
    """The real gateway on `text` as its config.toml (in a temp dir); `app_options` go to create_app."""
    config = tmp_path_factory.mktemp("gateway") / "config.toml"
    config.write_text(text)
    with serve_in_thread(create_app(load_settings(config), **app_options), http=HTTP_PROTOCOL) as gateway_url:
        gateway = Gateway(gateway_url, config, fake)
        yield gateway
        for client in gateway.clients:
            client.close()


def serve_gateway(
    upstream: tuple[FakeUpstream, str],
    tmp_path_factory: pytest.TempPathFactory,
    *,
    admin_token: str = "",
    max_body_bytes: int = 65536,
) -> Iterator[Gateway]:
    fake, url = upstream
    text = config_text(url, admin_token=admin_token, max_body_bytes=max_body_bytes)
    yield from serve_config(text, tmp_path_factory, fake)


@pytest.fixture(scope="module")
def gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_gateway(upstream, tmp_path_factory)


@pytest.fixture(scope="module")
def admin_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with `server.admin_token = ADMIN_TOKEN`: the admin API is on."""
    yield from serve_gateway(upstream, tmp_path_factory, admin_token=ADMIN_TOKEN)
