"""Quota (stages/quota.py): the hold's bound on the prompt (bytes for text, a fixed ceiling per image part),
and the stage as an ASGI app: hold before, settle before the answer's end, always settle, balance == Σ ledger."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.echo_config import echo_settings
from tests.stages.kit import (
    MODEL,
    NANO_PER_COMPLETION_TOKEN,
    NANO_PER_PROMPT_TOKEN,
    Books,
    Inner,
    books,
    chat_body,
    json_messages,
    make_call,
    meter_stage,
    purse_of,
    quota_stage,
    run_stage,
    sse_messages,
)
from tokenbridge.asgi import Message
from tokenbridge.call import Call
from tokenbridge.errors import ClientGone, QuotaExceeded, UpstreamError
from tokenbridge.settings import Settings
from tokenbridge.stages.quota import completion_allowance, prompt_bound
from tokenbridge.store.chunks import chunk_id
from tokenbridge.store.db import Database
from tokenbridge.store.keys import insert_key_with_account
from tokenbridge.tokens import IMAGE_PART_MAX_TOKENS, encoding, prompt_tokens

PNG_1MB = "data:image/png;base64," + "iVBORw0K" * (1 << 17)


def chat(*content: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": list(content)}], "max_tokens": 1}


def image(url: str, detail: str = "high") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def bound(body: dict[str, Any]) -> int:
    return prompt_bound(orjson.dumps(body), body)


def test_prompt_bound_of_text_is_the_body_bytes() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Héllo wörld " * 50}]}
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) == len(raw) >= prompt_tokens(body, "gpt-4o")


def test_prompt_bound_counts_a_large_image_by_its_ceiling_not_its_bytes() -> None:
    body = chat({"type": "text", "text": "What is in it?"}, image(PNG_1MB))
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) == len(raw) - len(PNG_1MB) + IMAGE_PART_MAX_TOKENS
    assert prompt_bound(raw, body) < 100_000 < len(raw)


def test_prompt_bound_counts_a_short_image_url_at_its_ceiling_too() -> None:
    body = chat(image("https://example.com/a.png"), image("https://example.com/b.png", "low"))
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) > 2 * IMAGE_PART_MAX_TOKENS > len(raw)


def test_prompt_bound_is_never_below_the_offline_count_for_any_model() -> None:
    body = chat({"type": "text", "text": "Compare them."}, image("https://x/a.png"), image(PNG_1MB, "low"))
    for model in ("gpt-4o", "gpt-4o-mini", "o1", "llama3.2"):
        assert bound(body) >= prompt_tokens(body, model)


def test_prompt_bound_keeps_counting_audio_and_file_parts_and_look_alikes_by_their_bytes() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklGR" * 20_000, "format": "wav"}}
    document = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + "JVBE" * 20_000}}
    not_an_image = {"type": "text", "text": "look", "image_url": {"url": PNG_1MB}}
    body = chat(audio, document, not_an_image)
    assert bound(body) == len(orjson.dumps(body))


def test_prompt_bound_text_bytes_bound_the_tokens_of_a_dense_script() -> None:
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 3000))  # CJK: few bytes per token is the worst case
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    assert bound(body) >= len(encoding("o200k_base").encode(text)) + 7


# --- the stage as an ASGI app, against a real SQLite store (tests/stages/kit.py) ------------------------------------

CREDIT = 10**9  # 1 USD
ANSWER = {
    "id": "chatcmpl-q",
    "object": "chat.completion",
    "created": 1,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}
ANSWER_COST = 12 * NANO_PER_PROMPT_TOKEN + 3 * NANO_PER_COMPLETION_TOKEN


def chunk(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps({"id": "chatcmpl-q", "object": "chat.completion.chunk", **payload}) + b"\n\n"


TEXT_EVENT = chunk({"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]})
USAGE_EVENT = chunk({"choices": [], "usage": ANSWER["usage"]})
DONE_EVENT = b"data: [DONE]\n\n"


async def keyed_call(db: Database, settings: Settings, *, credit: int = CREDIT, **body: Any) -> Call:
    key, _ = await insert_key_with_account(db, name="payer", credit=credit)
    return make_call(settings, body=chat_body(max_tokens=5, **body), key=key)


def expected_hold(call: Call) -> int:
    """Worked out by hand: every byte of the body a prompt token, plus max_tokens completion tokens."""
    return len(call.raw_body) * NANO_PER_PROMPT_TOKEN + 5 * NANO_PER_COMPLETION_TOKEN


async def test_quota_holds_the_expected_amount_before_the_inner_app_runs(
    db: Database, stage_settings: Settings
) -> None:
    call = await keyed_call(db, stage_settings)
    held: list[tuple[Books, int]] = []

    async def look(seen: Call) -> None:
        assert seen.key is not None
        held.append((await books(db, seen.key.id), purse_of(db).in_flight(seen.key.id)))

    result = await run_stage(quota_stage(meter_stage(Inner(*json_messages(ANSWER), on_enter=look)), db=db), call)
    assert result.error is None and result.status == 200
    assert call.key is not None
    ((seen, in_flight),) = held
    ((chunk, blocked),) = seen.holds  # the process's chunk of the key blocks the hold (and spare room) in the wallet
    assert chunk == chunk_id(db.owner, call.key.id) and expected_hold(call) <= blocked <= CREDIT
    assert in_flight == call.hold == expected_hold(call) < CREDIT
    assert purse_of(db).in_flight(call.key.id) == 0  # settled


async def test_quota_refuses_a_balance_that_cannot_cover_the_hold_without_calling_the_inner_app(
    db: Database, stage_settings: Settings
) -> None:
    call = await keyed_call(db, stage_settings, credit=1_000)
    inner = Inner(*json_messages(ANSWER))
    result = await run_stage(quota_stage(inner, db=db), call)
    assert isinstance(result.error, QuotaExceeded) and result.status == 429
    assert result.error_json()["code"] == "insufficient_quota" and not result.started
    assert inner.calls == 0 and call.hold == 0
    assert call.key is not None
    after = await books(db, call.key.id)
    assert (after.balance, after.holds, after.usage) == (1_000, [], [])
    message = result.error_json()["message"]
    assert message.startswith("Your balance is too low for this request: it could cost up to $")
    assert "and $0.000001 is available. Top up your balance" in message and "`" not in message
    assert result.error.headers["x-should-retry"] == "false"  # type: ignore[union-attr]


async def test_quota_refuses_past_the_key_spend_limit_and_says_the_wallet_is_fine(
    db: Database, stage_settings: Settings
) -> None:
    key, _ = await insert_key_with_account(db, name="capped", credit=CREDIT, spend_limit=1_000, spend_period="day")
    call = make_call(stage_settings, body=chat_body(max_tokens=5), key=key)
    inner = Inner(*json_messages(ANSWER))
    result = await run_stage(quota_stage(inner, db=db), call)
    assert isinstance(result.error, QuotaExceeded) and result.status == 429 and inner.calls == 0
    assert result.error_json()["code"] == "insufficient_quota" and result.error.headers["x-should-retry"] == "false"  # type: ignore[union-attr]
    message = result.error_json()["message"]
    assert "This key's spend limit of $0.000001 per day (it resets at 00:00 UTC) has $0.000001 left" in message
    assert "Your balance is not the problem" in message and "max_tokens" not in message
    assert (await books(db, key.id)).holds == []


async def test_quota_settles_a_json_answer_before_its_last_byte_goes_out(
    db: Database, stage_settings: Settings
) -> None:
    call = await keyed_call(db, stage_settings)
    assert call.key is not None
    key_id = call.key.id
    at_send: list[tuple[bool, int, int]] = []  # (more body to come, usage rows, open holds) as each message leaves

    async def look(message: Message) -> None:
        state = await books(db, key_id)
        at_send.append((message.get("more_body", False), len(state.usage), len(state.holds)))

    result = await run_stage(quota_stage(meter_stage(Inner(*json_messages(ANSWER))), db=db), call, on_send=look)
    assert result.error is None and orjson.loads(result.body) == ANSWER
    # The head waits for the body; by the time either reaches the caller the charge is written.
    assert at_send == [(False, 1, 0), (False, 1, 0)]


async def test_quota_settles_a_stream_before_done_goes_out(db: Database, stage_settings: Settings) -> None:
    call = await keyed_call(db, stage_settings, stream=True)
    assert call.key is not None
    key_id = call.key.id
    at_send: list[tuple[bytes, int]] = []  # (body, usage rows) as each message leaves

    async def look(message: Message) -> None:
        at_send.append((message.get("body", b""), len((await books(db, key_id)).usage)))

    inner = Inner(*sse_messages(TEXT_EVENT, USAGE_EVENT, DONE_EVENT))
    result = await run_stage(quota_stage(meter_stage(inner), db=db), call, on_send=look)
    assert result.error is None and DONE_EVENT in result.body
    rows_at = {body: rows for body, rows in at_send}
    assert rows_at[TEXT_EVENT] == 0  # still open while the answer streams
    assert rows_at[DONE_EVENT] == 1  # a client stops reading at [DONE]: the charge is in by then
    assert (await books(db, key_id)).usage[0]["cost"] == ANSWER_COST


@pytest.mark.parametrize("stream", [False, True])
async def test_quota_an_answer_ends_in_one_usage_row_one_charge_and_no_hold(
    db: Database, stage_settings: Settings, stream: bool
) -> None:
    call = await keyed_call(db, stage_settings, stream=stream)
    assert call.key is not None
    script = sse_messages(TEXT_EVENT, USAGE_EVENT, DONE_EVENT) if stream else json_messages(ANSWER)
    result = await run_stage(quota_stage(meter_stage(Inner(*script)), db=db), call)
    assert result.error is None
    after = await books(db, call.key.id)
    assert after.ledger == [("credit", CREDIT), ("charge", -ANSWER_COST)]
    assert after.balance == after.ledger_sum == CREDIT - ANSWER_COST
    assert after.holds == []
    (row,) = after.usage
    assert (row["request_id"], row["status"], row["end_reason"]) == (call.request_id, 200, "done")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (12, 3, "upstream")
    assert call.cost == ANSWER_COST


@pytest.mark.parametrize(
    ("failure", "status"),
    [(UpstreamError("channel 'x' answered HTTP 500"), 502), (RuntimeError("a bug below quota"), 500)],
)
async def test_quota_a_failure_in_the_inner_app_still_settles_and_charges_nothing_undelivered(
    db: Database, stage_settings: Settings, failure: Exception, status: int
) -> None:
    call = await keyed_call(db, stage_settings)
    assert call.key is not None
    result = await run_stage(quota_stage(meter_stage(Inner(raises=failure)), db=db), call)
    assert result.error is failure and not result.started  # re-raised, for intake to render
    after = await books(db, call.key.id)
    assert after.holds == [] and after.ledger == [("credit", CREDIT)] and after.balance == after.ledger_sum
    (row,) = after.usage
    assert (row["status"], row["cost"], row["prompt_tokens"]) == (status, 0, 0)


async def test_quota_a_stream_that_breaks_midway_settles_what_was_delivered(
    db: Database, stage_settings: Settings
) -> None:
    call = await keyed_call(db, stage_settings, stream=True)
    assert call.key is not None
    inner = Inner(*sse_messages(TEXT_EVENT, end=False), raises=UpstreamError("channel 'x' broke off the response"))
    result = await run_stage(quota_stage(meter_stage(inner), db=db), call)
    assert isinstance(result.error, UpstreamError) and TEXT_EVENT in result.body
    after = await books(db, call.key.id)
    (row,) = after.usage
    assert row["usage_source"] == "estimated" and 0 < row["cost"] <= expected_hold(call)
    assert after.ledger == [("credit", CREDIT), ("charge", -row["cost"])]
    assert after.balance == after.ledger_sum and after.holds == []


async def test_quota_a_caller_that_leaves_mid_stream_is_settled_for_what_it_got(
    db: Database, stage_settings: Settings
) -> None:
    call = await keyed_call(db, stage_settings, stream=True)
    assert call.key is not None
    inner = Inner(*sse_messages(TEXT_EVENT, end=False), wait=True)  # the upstream goes quiet; the caller gives up
    result = await run_stage(quota_stage(meter_stage(inner), db=db), call, leave_after=2)
    assert isinstance(result.error, ClientGone)
    after = await books(db, call.key.id)
    (row,) = after.usage
    assert (row["status"], row["end_reason"], row["usage_source"]) == (200, "client_gone", "estimated")
    assert after.ledger == [("credit", CREDIT), ("charge", -row["cost"])] and row["cost"] > 0
    assert after.holds == [] and after.balance == after.ledger_sum


async def test_quota_a_caller_that_leaves_before_any_byte_is_settled_as_499_for_nothing(
    db: Database, stage_settings: Settings
) -> None:
    call = await keyed_call(db, stage_settings)
    assert call.key is not None
    result = await run_stage(quota_stage(meter_stage(Inner(wait=True)), db=db), call, leave_after=0)
    assert isinstance(result.error, ClientGone) and not result.started
    after = await books(db, call.key.id)
    (row,) = after.usage
    assert (row["status"], row["end_reason"], row["cost"]) == (499, "client_gone", 0)
    assert after.ledger == [("credit", CREDIT)] and after.holds == [] and after.balance == after.ledger_sum


EMBEDDING = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
    "model": MODEL,
    "usage": {"prompt_tokens": 7, "total_tokens": 7},  # no completion_tokens: an embedding has no output
}


async def test_quota_holds_an_embedding_by_its_input_and_bills_its_prompt_tokens(
    db: Database, stage_settings: Settings
) -> None:
    key, _ = await insert_key_with_account(db, name="embedder", credit=CREDIT)
    body = {"model": MODEL, "input": "hello there", "max_tokens": 50}  # max_tokens means nothing here
    call = make_call(stage_settings, body=body, key=key, route="embeddings")
    held: list[int] = []

    async def look(seen: Call) -> None:
        held.append(seen.hold)

    result = await run_stage(quota_stage(meter_stage(Inner(*json_messages(EMBEDDING), on_enter=look)), db=db), call)
    assert result.error is None and orjson.loads(result.body) == EMBEDDING
    assert held == [len(call.raw_body) * NANO_PER_PROMPT_TOKEN]  # the input's bound, no completion part
    after = await books(db, key.id)
    [row] = after.usage
    assert (row["route"], row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (
        "embeddings", 7, 0, "upstream",
    )  # fmt: skip
    assert after.ledger == [("credit", CREDIT), ("charge", -7 * NANO_PER_PROMPT_TOKEN)]
    assert after.balance == after.ledger_sum == CREDIT - 7 * NANO_PER_PROMPT_TOKEN and after.holds == []


async def test_quota_bills_an_embedding_without_usage_by_its_input_counted_offline(
    db: Database, stage_settings: Settings
) -> None:
    key, _ = await insert_key_with_account(db, name="embedder", credit=CREDIT)
    texts = ["hello there", "general kenobi"]
    call = make_call(stage_settings, body={"model": MODEL, "input": texts}, key=key, route="embeddings")
    answer = {k: v for k, v in EMBEDDING.items() if k != "usage"}
    result = await run_stage(quota_stage(meter_stage(Inner(*json_messages(answer))), db=db), call)
    assert result.error is None
    tokens = sum(len(encoding("o200k_base").encode(text)) for text in texts)  # "m" is unknown to tiktoken
    [row] = (await books(db, key.id)).usage
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (tokens, 0, "estimated")
    assert row["cost"] == tokens * NANO_PER_PROMPT_TOKEN


def test_prompt_bound_gives_an_anthropic_image_block_the_image_ceiling_not_its_bytes() -> None:
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1MB}}
    nested = {"type": "tool_result", "tool_use_id": "t", "content": [block]}
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [block, nested]}]}
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) == len(raw) - 2 * len(PNG_1MB) + 2 * IMAGE_PART_MAX_TOKENS
    assert prompt_bound(raw, body) >= prompt_tokens(body, "claude-sonnet-4")


def test_the_hold_bounds_a_responses_answer_by_max_output_tokens_else_the_default() -> None:
    settings = echo_settings()
    bounded = make_call(settings, body={"model": MODEL, "input": "x", "max_output_tokens": 7}, route="responses")
    unbounded = make_call(settings, body={"model": MODEL, "input": "x"}, route="responses")
    assert completion_allowance(bounded) == 7
    assert completion_allowance(unbounded) == settings.server.default_max_tokens


def test_the_prompt_bound_of_a_responses_body_counts_an_input_image_at_its_ceiling() -> None:
    part = {"type": "input_image", "image_url": "data:image/png;base64," + "A" * 5000}
    body = {"model": MODEL, "input": [{"role": "user", "content": [part]}]}
    raw = orjson.dumps(body)
    assert prompt_bound(raw, body) == len(raw) - len(part["image_url"]) + IMAGE_PART_MAX_TOKENS


@pytest.mark.parametrize(
    ("route", "limits", "allowance"),
    [
        ("chat", {"max_tokens": 1, "max_completion_tokens": 100_000}, 100_000),  # vLLM honours the second
        ("completions", {"max_completion_tokens": 1, "max_tokens": 100_000}, 100_000),
        ("responses", {"max_output_tokens": 100_000, "max_tokens": 1}, 100_000),  # chat is sent max_output_tokens
        ("responses", {"max_tokens": 5}, None),  # not a Responses field: no upstream is bound by it
        ("messages", {"max_tokens": 7, "max_completion_tokens": 1}, 7),
    ],
)
def test_the_hold_takes_the_largest_limit_the_route_knows_and_no_other(
    route: str, limits: dict[str, int], allowance: int | None
) -> None:
    settings = echo_settings()
    call = make_call(settings, body={"model": MODEL, "input": "x", **limits}, route=route)
    assert completion_allowance(call) == (settings.server.default_max_tokens if allowance is None else allowance)
