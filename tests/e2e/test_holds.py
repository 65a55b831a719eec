"""Concurrent requests cannot overspend: holds are taken atomically against balance − open holds."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import orjson

from tests.conftest import PRICE, Gateway

MAX_TOKENS = 1000
IN_FLIGHT = 6
AFFORDABLE = 3


def test_quota_concurrent_streams_never_overspend(gateway: Gateway) -> None:
    body = orjson.dumps(
        {
            "model": "fake-hold",
            "messages": [{"role": "user", "content": "hold"}],
            "max_tokens": MAX_TOKENS,
            "stream": True,
        }
    )
    # The hold is the worst case: every body byte a prompt token, plus max_tokens (prices are per 1M tokens).
    hold = len(body) * int(Decimal(PRICE["input"]) * 1000) + MAX_TOKENS * int(Decimal(PRICE["output"]) * 1000)
    credit_nano = AFFORDABLE * hold
    secret = gateway.create_key("holds", credit_usd=str(Decimal(credit_nano) / 10**9))
    gateway.fake.arm()
    answered = threading.Barrier(IN_FLIGHT + 1, timeout=30)

    def one() -> tuple[int, bytes]:
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            content=body,
            timeout=30,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        ) as r:
            answered.wait()  # every request has its answer while the admitted ones are still held open
            return r.status_code, r.read()

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(one) for _ in range(IN_FLIGHT)]
        answered.wait()
        gateway.fake.release()
        results = [f.result() for f in futures]

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * AFFORDABLE + [429] * (IN_FLIGHT - AFFORDABLE)
    assert all(b"insufficient_quota" in text for status, text in results if status == 429)
    assert all(text.rstrip().endswith(b"data: [DONE]") for status, text in results if status == 200)
    balance = gateway.balance("holds")
    assert 0 <= balance == gateway.ledger_sum("holds")
    rows = gateway.usage("holds")  # the refused ones too (issue 14): cost 0, no ledger row
    assert sorted(r["end_reason"] for r in rows) == ["done"] * AFFORDABLE + ["refused"] * (IN_FLIGHT - AFFORDABLE)
