"""A body with a key given twice: the upstream gets the body the gateway checked, not another reading of it."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import Gateway
from tests.e2e.test_chat import MESSAGES


def first_wins(raw: bytes) -> Any:
    """How an upstream that keeps the first of two equal keys reads a body."""

    def keep_first(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in pairs:
            out.setdefault(name, value)
        return out

    return json.loads(raw, object_pairs_hook=keep_first)


def test_duplicate_keys_cannot_smuggle_another_model_or_limit_upstream(gateway: Gateway) -> None:
    secret = gateway.create_key("dup-keys", models=("fake-ok",))
    # Checked last-wins: fake-ok (allowed), max_tokens 1 (what the hold covers), the message's last content.
    messages = '[{"role":"user","content":"a much longer prompt than was counted","content":"Say hello"}]'
    raw = f'{{"model":"fake-cached","max_tokens":100000,"messages":{messages},"model":"fake-ok","max_tokens":1}}'
    before = len(gateway.fake.seen)
    answer = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=raw.encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    [seen] = gateway.fake.seen[before:]  # one request went upstream: the one checked
    sent = seen.raw
    assert first_wins(sent) == json.loads(sent) == {"model": "fake-ok", "max_tokens": 1, "messages": MESSAGES}
    [row] = gateway.usage("dup-keys")
    assert (row["model"], row["status"]) == ("fake-ok", 200)
