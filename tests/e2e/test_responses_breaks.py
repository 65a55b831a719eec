"""Breaks and disconnects on /v1/responses bill by SPEC §6, on both wires, as on chat (tests/e2e/test_streams.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.e2e.test_billing import O200K, chat_prompt_tokens
from tests.e2e.test_chat import expected_cost
from tests.e2e.test_responses import events_of, post
from tests.e2e.test_streams import hang_up_while_held, settled_row
from tests.fakes.responses import PIECES, TEXT
from tests.schemas import validate_event

SAY = "Say hello"


def delivered_cost(row: dict[str, Any], completion: str) -> None:
    """The row is estimated: the prompt plus the completion text the caller got, priced exactly."""
    prompt, delivered = chat_prompt_tokens(SAY), len(O200K.encode(completion))
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("estimated", prompt, delivered)
    assert row["cost"] == expected_cost(prompt, delivered)


@pytest.mark.parametrize("model", ["fake-resp-cut", "fake-break"])  # native, and chat's stream translated
def test_a_broken_stream_ends_with_an_error_event_and_bills_what_was_delivered(gateway: Gateway, model: str) -> None:
    name = f"resp-break-{model}"
    response = post(gateway, gateway.create_key(name), {"model": model, "input": SAY, "stream": True})
    events = events_of(response.content)
    for event in events:
        validate_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # the error event's number follows
    assert events[-1]["type"] == "error" and events[-1]["code"] == "upstream_error"
    assert not [e for e in events if e["type"] == "response.completed"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == PIECES[0]
    [row] = gateway.usage(name)
    assert row["end_reason"] == "upstream_error"
    delivered_cost(row, PIECES[0])
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - row["cost"]


def test_the_sdk_stream_helper_refuses_a_broken_stream_as_incomplete(gateway: Gateway) -> None:
    client = gateway.client(gateway.create_key("resp-break-helper"))
    with client.responses.stream(model="fake-resp-cut", input=SAY) as stream, pytest.raises(RuntimeError):
        stream.get_final_response()


@pytest.mark.parametrize("stream", [False, True])
def test_a_native_answer_without_usage_is_estimated(gateway: Gateway, stream: bool) -> None:
    name = f"resp-nousage-{stream}"
    response = post(gateway, gateway.create_key(name), {"model": "fake-resp-nousage", "input": SAY, "stream": stream})
    assert response.status_code == 200
    [row] = gateway.usage(name)
    assert row["end_reason"] == "done"
    delivered_cost(row, TEXT)


def test_a_native_incomplete_answer_is_billed_by_its_usage(gateway: Gateway) -> None:
    name = "resp-incomplete"
    events = events_of(post(gateway, gateway.create_key(name), {"model": "fake-resp-incomplete", "input": SAY,
                                                                "stream": True}).content)  # fmt: skip
    assert events[-1]["type"] == "response.incomplete"
    [row] = gateway.usage(name)
    assert (row["end_reason"], row["usage_source"], row["prompt_tokens"], row["cached_tokens"]) == ("done", "upstream",
                                                                                                  12, 8)  # fmt: skip
    assert row["cost"] == expected_cost(12, 3, 8)


@pytest.mark.parametrize(("model", "deltas"), [("fake-resp-hold", 1), ("fake-hold", 3)])  # native, chat
def test_a_caller_leaving_mid_stream_closes_the_upstream_and_pays_for_what_it_got(
    gateway: Gateway, model: str, deltas: int
) -> None:
    name = f"resp-gone-{model}"
    gateway.fake.arm()
    got: list[str] = []
    headers = {"Authorization": f"Bearer {gateway.create_key(name)}"}
    body = {"model": model, "input": SAY, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/responses", json=body, headers=headers, timeout=20) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"response.output_text.delta"' in line:
                got.append(line)
                if len(got) == deltas:
                    break
    assert gateway.fake.hung_up.acquire(timeout=10), "the upstream connection stayed open"
    row = settled_row(gateway, name, lambda r: r["end_reason"] == "client_gone")
    delivered_cost(row, "".join(PIECES[:deltas]))
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - row["cost"]


@pytest.mark.parametrize("model", ["fake-resp-hold", "fake-hold"])  # native, chat
def test_a_caller_leaving_a_json_request_closes_the_upstream_and_pays_for_the_prompt(
    gateway: Gateway, model: str
) -> None:
    name = f"resp-gone-json-{model}"
    hang_up_while_held(gateway, "/v1/responses", gateway.create_key(name), {"model": model, "input": SAY})
    row = settled_row(gateway, name, lambda r: r["end_reason"] == "client_gone")
    assert row["status"] == 499
    delivered_cost(row, "")
