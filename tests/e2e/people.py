"""Helpers for the account API's e2e tests: a gateway with an `[accounts]` table, and a `Browser`
(an httpx client that keeps the session cookie and sends the gateway's own Origin, as the console's
pages would)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway, config_text, serve_config
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]
PASSWORD = "correct horse battery staple"


def accounts_config(upstream_url: str, **accounts: Any) -> str:
    """The shared test config (admin token on) plus an [accounts] table of `accounts`."""
    lines = []
    for key, value in accounts.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        else:
            lines.append(f"{key} = {value}")
    return config_text(upstream_url, admin_token=ADMIN_TOKEN) + "\n[accounts]\n" + "\n".join(lines) + "\n"


def serve_accounts(
    upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory, **accounts: Any
) -> Iterator[Gateway]:
    fake, url = upstream
    yield from serve_config(accounts_config(url, **accounts), tmp_path_factory, fake)


class Browser:
    """One person's browser on the gateway: cookies kept, its own Origin sent, JSON bodies."""

    def __init__(self, gateway: Gateway, *, headers: dict[str, str] | None = None) -> None:
        self.gateway = gateway
        self.name = ""  # the account it registered or signed in as
        self.http = httpx.Client(base_url=gateway.url, headers={"Origin": gateway.url, **(headers or {})}, timeout=20)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def register(self, name: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
        self.name = name
        return self.call("POST", "/api/register", json={"name": name, "password": password, **extra})

    def sign_in(self, name: str | None = None, password: str = PASSWORD) -> httpx.Response:
        self.name = name or self.name
        return self.call("POST", "/api/session", json={"name": self.name, "password": password})

    @property
    def session(self) -> str:
        return str(self.http.cookies["tb_session"])

    def create_key(self, name: str, **fields: Any) -> dict[str, Any]:
        answer = self.call("POST", "/api/keys", json={"name": name, **fields})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())


def admin(gateway: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return gateway.api(method, path, token=ADMIN_TOKEN, **kwargs)


def member(gateway: Gateway, name: str, *, credit_usd: str = "0", password: str = PASSWORD) -> Browser:
    """An account made by the admin, signed in in a Browser of its own."""
    made = admin(gateway, "POST", "/api/accounts", json={"name": name, "password": password, "credit_usd": credit_usd})
    assert made.status_code == 201, made.text
    browser = Browser(gateway)
    assert browser.sign_in(name, password).status_code == 200
    return browser
