"""Money that always adds up (SPEC §6): holds under concurrency, stream usage, estimates,
disconnects, crash recovery, limits, and every term of the price formula."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.e2e.test_first_run import Served
from tests.fakes.server import free_port
from tests.fakes.upstream import PIECES, TEXT, USAGE
from tests.schemas import validate
from tokenbridge.store.keys import list_keys
from tokenbridge.store.ledger import count_holds, get_ledger_sum, sum_holds
from tokenbridge.tokens import encoding

O200K = encoding("o200k_base")


def chat_prompt_tokens(content: str) -> int:
    """OpenAI's chat counting, written out: 3 per message + role + content, and 3 to prime the reply."""
    return 3 + len(O200K.encode("user")) + len(O200K.encode(content)) + 3


def test_concurrent_sdk_requests_never_overspend(gateway: Gateway) -> None:
    overspend_scenario(gateway, "overspend")


def overspend_scenario(gateway: Gateway, name: str, while_held: Callable[[], None] = lambda: None) -> None:
    """20 streams of one key held open at once, credit for 5: exactly 5 get through. `while_held` runs
    while all 20 are in flight (the workers test looks at which process holds which connection)."""
    affordable, in_flight, max_tokens = 5, 20, 1000
    sizes: list[int] = []
    probe = openai.OpenAI(
        api_key=gateway.create_key(f"{name}-probe"),
        base_url=gateway.url + "/v1",
        max_retries=0,
        http_client=httpx.Client(event_hooks={"request": [lambda r: sizes.append(len(r.read()))]}),
    )
    gateway.fake.release()  # the probe must not be held
    for _ in probe.chat.completions.create(model="fake-hold", messages=MESSAGES, max_tokens=max_tokens, stream=True):
        pass
    probe.close()
    hold = sizes[0] * 1500 + max_tokens * 4000  # nano-USD: body bytes at $1.5/1M + max_tokens at $4/1M
    client = gateway.client(gateway.create_key(name, credit_usd=str(Decimal(affordable * hold) / 10**9)))
    gateway.fake.arm()
    answered = threading.Barrier(in_flight + 1, timeout=60)

    def one() -> str:
        try:
            stream = client.chat.completions.create(
                model="fake-hold", messages=MESSAGES, max_tokens=max_tokens, stream=True
            )
        except openai.RateLimitError as exc:
            answered.wait()
            return str(exc.code)
        answered.wait()
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with ThreadPoolExecutor(in_flight) as pool:
        results = [pool.submit(one) for _ in range(in_flight)]
        answered.wait()
        while_held()
        gateway.fake.release()
        outcomes = sorted(f.result() for f in results)
    assert outcomes == [TEXT] * affordable + ["insufficient_quota"] * (in_flight - affordable)
    assert 0 <= gateway.balance(name) == gateway.ledger_sum(name)
    rows = gateway.usage(name)  # the refused ones too (issue 14): cost 0, no ledger row
    assert sorted(r["end_reason"] for r in rows) == ["done"] * affordable + ["refused"] * (in_flight - affordable)
    assert sum(r["cost"] for r in rows if r["end_reason"] == "refused") == 0


def test_stream_usage_chunk_is_cut_unless_asked_and_passes_unchanged_when_asked(gateway: Gateway) -> None:
    key = gateway.create_key("usage-chunk")
    headers = {"Authorization": f"Bearer {key}"}
    body: dict[str, Any] = {"model": "fake-ok", "messages": MESSAGES, "stream": True}
    plain = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers).content
    assert b'"choices":[]' not in plain and b'"usage"' not in plain and plain.endswith(b"data: [DONE]\n\n")
    usage_event = orjson.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "fake-ok",
            "choices": [],
            "usage": USAGE,
        }
    )
    body["stream_options"] = {"include_usage": True}
    asked = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers).content
    assert b"data: " + usage_event + b"\n\n" in asked
    rows = gateway.usage("usage-chunk")
    assert [(r["usage_source"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [("upstream", 12, 3)] * 2


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_without_usage_is_billed_from_the_offline_tokenizer(gateway: Gateway, stream: bool) -> None:
    key = gateway.create_key(f"estimated-{stream}")
    answer = gateway.client(key).chat.completions.create(model="fake-nousage", messages=MESSAGES, stream=stream)
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices) == TEXT
    [row] = gateway.usage(f"estimated-{stream}")
    prompt, completion = chat_prompt_tokens("Say hello"), len(O200K.encode(TEXT))
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("estimated", prompt, completion)
    assert row["cost"] == expected_cost(prompt, completion)


def test_caller_closing_after_three_chunks_pays_only_for_what_it_got(gateway: Gateway) -> None:
    key = gateway.create_key("gone-after-3")
    gateway.fake.arm()
    stream = gateway.client(key).chat.completions.create(model="fake-hold", messages=MESSAGES, stream=True)
    chunks = [next(stream) for _ in range(1 + len(PIECES))]  # the role chunk, then three content chunks
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT
    stream.close()
    assert gateway.fake.hung_up.acquire(timeout=10), "the upstream connection stayed open"
    from tests.e2e.test_streams import settled_row

    row = settled_row(gateway, "gone-after-3", lambda r: r["end_reason"] == "client_gone")
    prompt, delivered = chat_prompt_tokens("Say hello"), len(O200K.encode(TEXT))
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("estimated", prompt, delivered)
    assert row["cost"] == expected_cost(prompt, delivered)
    assert gateway.balance("gone-after-3") == gateway.ledger_sum("gone-after-3") == 10**9 - row["cost"]


def test_upstream_dropping_mid_stream_raises_in_the_sdk_and_bills_what_was_delivered(gateway: Gateway) -> None:
    key = gateway.create_key("dropped")
    stream = gateway.client(key).chat.completions.create(model="fake-break", messages=MESSAGES, stream=True)
    got = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == PIECES[0]
    [row] = gateway.usage("dropped")
    assert (row["end_reason"], row["usage_source"]) == ("upstream_error", "estimated")
    assert row["completion_tokens"] == len(O200K.encode(PIECES[0]))


def test_kill_9_mid_flight_then_restart_leaves_no_holds_and_exact_ledgers(gateway: Gateway, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(gateway.config, config)
    port = free_port()
    served = Served(config, port)
    in_flight = 200
    try:
        served.until(r"Uvicorn running on")
        crash = Gateway(f"http://127.0.0.1:{port}", config, gateway.fake)
        key = crash.create_key("crash", credit_usd="10")
        crash.fake.arm()

        def one() -> None:
            try:
                with httpx.stream(
                    "POST",
                    crash.url + "/v1/chat/completions",
                    timeout=60,
                    json={"model": "fake-hold", "messages": MESSAGES, "stream": True},
                    headers={"Authorization": f"Bearer {key}"},
                ) as response:
                    for _ in response.iter_bytes():
                        pass
            except httpx.HTTPError:
                pass  # the server is killed under it

        with ThreadPoolExecutor(in_flight) as pool:
            for _ in range(in_flight):
                pool.submit(one)
            for _ in range(in_flight):  # every request is in flight, its hold open, upstream holding
                assert crash.fake.holding.acquire(timeout=60)
            # One chunk of the key's (store/chunks.py) blocks all 200 holds, and never fewer:
            assert crash.db_run(count_holds) >= 1 and crash.db_run(sum_holds) >= in_flight
            os.kill(served.process.pid, signal.SIGKILL)
            served.process.wait(30)
    finally:
        served.stop()

    restarted = Served(config, port)
    try:
        restarted.until(r"released \d+ holds? of processes that are gone")
        restarted.until(r"Uvicorn running on")
        assert crash.db_run(count_holds) == 0
        keys = crash.db_run(list_keys)
        assert keys and all(k.balance == crash.db_run(lambda db, k=k: get_ledger_sum(db, k.account_id)) for k in keys)
    finally:
        restarted.stop()


def test_rpm_limit_gives_429_with_retry_after(gateway: Gateway) -> None:
    key = gateway.create_key("rpm", rpm=2)
    client = gateway.client(key)
    for _ in range(2):
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="echo-1", messages=MESSAGES)
    assert info.value.code == "rate_limit_exceeded"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert validate("ErrorResponse", info.value.response.json())["error"]["type"] == "requests"


def test_tpm_limit_gives_429_with_retry_after(gateway: Gateway) -> None:
    key = gateway.create_key("tpm", tpm=10)
    client = gateway.client(key)
    client.chat.completions.create(model="fake-ok", messages=MESSAGES)  # 15 tokens: the minute is used up
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert info.value.code == "rate_limit_exceeded" and info.value.response.headers["retry-after"].isdigit()
    assert info.value.response.json()["error"]["type"] == "tokens"


def test_insufficient_quota_is_sent_once_by_an_sdk_with_default_retries(gateway: Gateway) -> None:
    sent: list[str] = []
    client = openai.OpenAI(
        api_key=gateway.create_key("no-retry", credit_usd="0"),
        base_url=gateway.url + "/v1",
        http_client=httpx.Client(event_hooks={"request": [lambda r: sent.append(r.url.path)]}),
    )
    with client, pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert info.value.code == "insufficient_quota" and info.value.response.headers["x-should-retry"] == "false"
    assert sent == ["/v1/chat/completions"]


def test_group_multiplier_scales_the_cost_exactly(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("gold", group="gold"))
    client.chat.completions.create(model="fake-cached", messages=MESSAGES)
    [row] = gateway.usage("gold")
    assert row["cost"] == expected_cost(12, 3, cached=8, multiplier=Fraction(8, 10))


def test_sized_sse_stream_with_its_usage_chunk_cut_still_ends_cleanly(gateway: Gateway) -> None:
    key = gateway.create_key("sized-sse")
    body = {"model": "fake-sized-sse", "messages": MESSAGES, "stream": True}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200 and "content-length" not in response.headers
    assert response.content.endswith(b"data: [DONE]\n\n") and b'"usage"' not in response.content
    [row] = gateway.usage("sized-sse")
    assert (row["end_reason"], row["usage_source"], row["completion_tokens"]) == ("done", "upstream", 3)
