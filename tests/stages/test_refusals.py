"""The refusal stage alone: a refused request of a valid key gets a usage row (cost 0, no ledger
row); one that got a hold, or has no valid key, gets none from it; channel names leave every error."""

from __future__ import annotations

import pytest

from tests.stages.kit import Inner, auth_stage, chat_body, make_call, refusal_stage, run_stage
from tokenbridge.errors import InvalidRequest, QuotaExceeded, UpstreamError
from tokenbridge.settings import Settings
from tokenbridge.store.db import Database
from tokenbridge.store.keys import insert_key_with_account, revoke_key
from tokenbridge.store.ledger import get_ledger_sum
from tokenbridge.store.usage import list_usage


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


async def test_a_bad_body_of_a_valid_key_is_a_refused_row_found_from_the_token(
    db: Database, stage_settings: Settings
) -> None:
    key, secret = await insert_key_with_account(db, name="bad-body", credit=5_000)
    inner = Inner(raises=InvalidRequest("'messages' must be a list.", param="messages"))
    call = make_call(stage_settings, body=chat_body())
    result = await run_stage(refusal_stage(inner, db=db), call, headers=bearer(secret))
    assert isinstance(result.error, InvalidRequest) and call.key is None  # it writes no field of the Call
    [row] = await list_usage(db, key="bad-body")
    assert (row["request_id"], row["status"], row["end_reason"], row["cost"]) == (call.request_id, 400, "refused", 0)
    assert row["error"] == "'messages' must be a list." and row["attempts"] == 0 and row["channel"] is None
    assert await get_ledger_sum(db, key.account_id) == 5_000  # the opening credit alone


async def test_a_refusal_after_auth_uses_the_calls_key(db: Database, stage_settings: Settings) -> None:
    key, secret = await insert_key_with_account(db, name="poor", credit=1, models=("other",))
    call = make_call(stage_settings, body=chat_body())
    result = await run_stage(refusal_stage(auth_stage(Inner(), db=db), db=db), call, headers=bearer(secret))
    assert result.status == 404 and result.error_json()["code"] == "model_not_found"
    [row] = await list_usage(db, key="poor")
    assert (row["status"], row["model"], row["end_reason"]) == (404, call.model, "refused")


@pytest.mark.parametrize("token", ["sk-tb-unknown", None, "revoked"])
async def test_no_row_without_a_usable_key(db: Database, stage_settings: Settings, token: str | None) -> None:
    key, secret = await insert_key_with_account(db, name="gone", credit=5)
    if token == "revoked":
        await revoke_key(db, key.public_id)
        token = secret
    inner = Inner(raises=InvalidRequest("bad"))
    result = await run_stage(
        refusal_stage(inner, db=db), make_call(stage_settings, body=chat_body()), headers=bearer(token) if token else ()
    )
    assert isinstance(result.error, InvalidRequest)
    assert await list_usage(db) == []


async def test_a_request_that_got_a_hold_is_left_to_quota(db: Database, stage_settings: Settings) -> None:
    key, _ = await insert_key_with_account(db, name="held", credit=5_000)
    call = make_call(stage_settings, body=chat_body(), key=key, held=True)
    result = await run_stage(refusal_stage(Inner(raises=QuotaExceeded("no")), db=db), call)
    assert isinstance(result.error, QuotaExceeded) and await list_usage(db) == []


async def test_channel_names_leave_no_error_that_goes_out(db: Database, stage_settings: Settings) -> None:
    key, _ = await insert_key_with_account(db, name="upstream")
    error = UpstreamError("Every channel for model 'm' failed (1 tried); the last: channel 'acme-eu' answered HTTP 500")
    call = make_call(stage_settings, body=chat_body(), key=key)
    result = await run_stage(refusal_stage(Inner(raises=error), db=db), call)
    message = result.error_json()["message"]
    assert message == "Every channel for model 'm' failed (1 tried); the last: the provider answered HTTP 500"
    assert await list_usage(db) == []  # a 502 is no refusal
