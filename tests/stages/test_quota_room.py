"""Quota (stages/quota.py) over a real SQLite file: a key on the exact per-request path (RPM/TPM) is not
refused for money that sits as spare room in this process's chunk of another key of its account."""

from __future__ import annotations

from tests.stages.kit import (
    NANO_PER_COMPLETION_TOKEN,
    NANO_PER_PROMPT_TOKEN,
    Inner,
    chat_body,
    json_messages,
    make_call,
    meter_stage,
    purse_of,
    quota_stage,
    run_stage,
)
from tests.stages.test_quota import ANSWER, ANSWER_COST
from tokenbridge.settings import Settings
from tokenbridge.store.db import Database
from tokenbridge.store.keys import insert_key_with_account
from tokenbridge.store.ledger import get_ledger_sum, insert_credit

MOST_TOKENS = 10**6


async def test_quota_an_rpm_key_takes_the_wallet_an_idle_chunk_of_its_account_spared(
    db: Database, stage_settings: Settings
) -> None:
    chunked, _ = await insert_key_with_account(db, name="chunked", account="shared")
    rated, _ = await insert_key_with_account(db, name="rated", account="shared", rpm=1_000)
    first = make_call(stage_settings, body=chat_body(max_tokens=5), key=chunked, request_id="r-chunked")
    big = make_call(stage_settings, body=chat_body(max_tokens=MOST_TOKENS), key=rated, request_id="r-rated")
    whole = len(big.raw_body) * NANO_PER_PROMPT_TOKEN + MOST_TOKENS * NANO_PER_COMPLETION_TOKEN
    await insert_credit(db, "shared", whole + ANSWER_COST)  # what is left once the first is charged: the big hold
    assert (await run_stage(quota_stage(meter_stage(Inner(*json_messages(ANSWER))), db=db), first)).status == 200
    assert first.cost == ANSWER_COST and purse_of(db).in_flight(chunked.id) == 0  # its chunk's spare room stays
    result = await run_stage(quota_stage(meter_stage(Inner(*json_messages(ANSWER))), db=db), big)
    assert result.error is None and result.status == 200 and big.hold == whole  # not refused: the money was free
    assert await get_ledger_sum(db, rated.account_id) == whole - ANSWER_COST
