"""The `anthropic` transport (upstream/anthropic.py): the secret as x-api-key, anthropic-version set or forwarded."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest

from tests.fakes.server import serve_in_thread
from tokenbridge.settings import Channel
from tokenbridge.upstream.anthropic import ANTHROPIC_VERSION
from tokenbridge.upstream.client import UpstreamClient, speaks_messages
from tokenbridge.upstream.proxy import forwarded

SECRET = "sk-ant-SECRET-do-not-forward"


class Recorder:
    """An upstream that answers `{}` and keeps each request's path and headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        self.seen.append((scope["path"], {k.decode(): v.decode() for k, v in scope["headers"]}))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Recorder, str]]:
    app = Recorder()
    with serve_in_thread(app) as url:
        yield app, url


def channel(kind: str, url: str) -> Channel:
    return Channel(
        name="c", kind=kind, base_url=url + "/v1", api_key=SECRET, models=("m",), model_map=MappingProxyType({})
    )


async def send_one(chan: Channel, headers: dict[str, str] | None = None) -> None:
    client = UpstreamClient(pool_limit=2)
    await client.start()
    try:
        response = await client.open(chan, "/messages", b"{}", stream=False, headers=headers)
        assert response.status == 200
        response.close()
    finally:
        await client.close()


async def test_an_anthropic_channel_sends_its_secret_as_x_api_key_with_a_version(
    recorder: tuple[Recorder, str],
) -> None:
    app, url = recorder
    await send_one(channel("anthropic", url))
    path, headers = app.seen[-1]
    assert path == "/v1/messages"
    assert headers["x-api-key"] == SECRET
    assert headers["anthropic-version"] == ANTHROPIC_VERSION == "2023-06-01"
    assert "authorization" not in headers


async def test_the_caller_s_version_and_betas_win_where_the_route_forwards_them(recorder: tuple[Recorder, str]) -> None:
    app, url = recorder
    caller = [
        (b"anthropic-version", b"2026-01-01"),
        (b"anthropic-beta", b"context-management-2025-06-27"),
        (b"authorization", b"Bearer sk-tb-the-caller-s-own-key"),
        (b"x-api-key", b"sk-tb-the-caller-s-own-key"),
    ]
    await send_one(channel("anthropic", url), forwarded(caller, frozenset({b"anthropic-version", b"anthropic-beta"})))
    _, headers = app.seen[-1]
    assert headers["anthropic-version"] == "2026-01-01"
    assert headers["anthropic-beta"] == "context-management-2025-06-27"
    assert headers["x-api-key"] == SECRET  # never the caller's credentials
    assert "authorization" not in headers


async def test_an_openai_channel_keeps_its_bearer_and_sends_no_anthropic_header(recorder: tuple[Recorder, str]) -> None:
    app, url = recorder
    await send_one(channel("openai", url))
    _, headers = app.seen[-1]
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert "x-api-key" not in headers and "anthropic-version" not in headers


def test_only_the_anthropic_kind_speaks_messages_natively() -> None:
    assert speaks_messages(channel("anthropic", "http://x"))
    assert not speaks_messages(channel("openai", "http://x"))
    assert not speaks_messages(channel("echo", ""))
