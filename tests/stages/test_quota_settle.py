"""Quota against a real SQLite file and a fake inner app: a settle that cannot be written hands out
nothing that completes the answer, and its hold stays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import config_text
from tokenbridge.asgi import Message
from tokenbridge.call import Call
from tokenbridge.errors import BillingUnavailable
from tokenbridge.money import Usage
from tokenbridge.runtime import Runtime
from tokenbridge.settings import parse_settings
from tokenbridge.stages import quota
from tokenbridge.stages.quota import QuotaMiddleware
from tokenbridge.store.chunks import chunk_id
from tokenbridge.store.keys import insert_key_with_account

BODY = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
DONE = b"data: [DONE]\n\n"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    text = config_text("http://127.0.0.1:9").replace('database = "gateway.db"', f'database = "{tmp_path}/q.db"')
    settings = parse_settings(text, tmp_path / "config.toml", environ={})
    rt = Runtime(settings)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()


async def new_call(runtime: Runtime) -> Call:
    key, _ = await insert_key_with_account(runtime.db, name="k", credit=10**9)
    raw = orjson.dumps(BODY)
    call = Call(request_id="req-q", settings=runtime.settings)
    call.route, call.body, call.raw_body, call.model, call.key = "chat", BODY, raw, "echo-1", key
    return call


def answering(call: Call, *, stream: bool) -> Any:
    """An inner app whose answer carries a usage SQLite cannot store (2**63 tokens: OverflowError)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        kind = b"text/event-stream" if stream else b"application/json"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
        call.status = 200
        if stream:
            await send({"type": "http.response.body", "body": b'data: {"choices":[]}\n\n', "more_body": True})
            call.delivered += 1  # intake counts what goes out
        call.usage, call.usage_source, call.complete = Usage(2**63, 1), "upstream", True  # as the meter marks it
        await send({"type": "http.response.body", "body": DONE if stream else b"{}", "more_body": stream})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def holds(runtime: Runtime) -> list[tuple[Any, ...]]:
    async with runtime.db.reader.execute("SELECT request_id, amount FROM holds") as cur:
        return [tuple(row) for row in await cur.fetchall()]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_settle_that_raises_sends_nothing_that_completes_the_answer_and_keeps_the_hold(
    runtime: Runtime, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quota, "SETTLE_RETRY_DELAYS_S", (), raising=False)  # the retry gives up at once
    call = await new_call(runtime)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    stage = QuotaMiddleware(
        answering(call, stream=stream), db=runtime.current_db, purse=runtime.purse, spawn=runtime.spawn
    )
    with pytest.raises(BillingUnavailable):
        await stage({"type": "http", "tokenbridge.call": call}, None, send)  # type: ignore[arg-type]
    bodies = b"".join(m.get("body", b"") for m in sent)
    assert DONE not in bodies and b"{}" not in bodies
    assert all(m.get("more_body", False) for m in sent if m["type"] == "http.response.body")
    assert [m["type"] for m in sent] == (["http.response.start", "http.response.body"] if stream else [])
    assert call.end_reason == "store_error"
    assert call.key is not None  # the hold stays in flight, its chunk blocking its money
    assert runtime.purse.in_flight(call.key.id) == call.hold > 0
    await runtime.purse.return_idle(idle_s=0)  # (not idle: kept)
    assert [h[0] for h in await holds(runtime)] == [chunk_id(runtime.db.owner, call.key.id)]
