"""The auth stage (stages/auth.py) as an ASGI app, against a real SQLite store: which bearer tokens
pass, the key that lands in the Call, a key's allow_ips, and that nothing of the caller's secret goes further."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.stages.kit import (
    MODEL,
    Inner,
    Result,
    auth_stage,
    chat_body,
    make_call,
    open_store,
    run_stage,
    write_settings,
)  # fmt: skip
from tokenbridge.autherrors import IpNotAllowed
from tokenbridge.call import Call
from tokenbridge.errors import InvalidApiKey, ModelNotFound
from tokenbridge.settings import Settings, load_settings
from tokenbridge.store.accounts import update_account
from tokenbridge.store.db import Database
from tokenbridge.store.keys import (
    KeyCache,
    get_keys_version,
    hash_secret,
    insert_key_with_account,
    new_secret,
    revoke_key,
    update_key,
)


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


async def authenticate(
    db: Database, stage_settings: Settings, headers: list[tuple[bytes, bytes]]
) -> tuple[Result, Inner, Call]:
    inner = Inner()
    made = make_call(stage_settings, body=chat_body())
    result = await run_stage(auth_stage(inner, db=db), made, headers=headers)
    return result, inner, made


async def test_auth_a_valid_key_lands_in_the_call_and_the_inner_app_runs(
    db: Database, stage_settings: Settings
) -> None:
    record, secret = await insert_key_with_account(db, name="alice", credit=5)
    result, inner, call = await authenticate(db, stage_settings, bearer(secret))
    assert result.error is None and inner.calls == 1
    assert call.key is not None and (call.key.id, call.key.name) == (record.id, "alice")


async def test_auth_the_scheme_is_case_blind_and_spaces_around_the_token_do_not_count(
    db: Database, stage_settings: Settings
) -> None:
    _, secret = await insert_key_with_account(db, name="bob")
    result, _, call = await authenticate(db, stage_settings, [(b"authorization", f"bEaReR   {secret}  ".encode())])
    assert result.error is None and call.key is not None and call.key.name == "bob"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer    ")],
        [(b"x-api-key", b"")],
    ],
)
async def test_auth_without_a_key_is_a_401_saying_how_to_send_one(
    db: Database, stage_settings: Settings, headers: list[tuple[bytes, bytes]]
) -> None:
    result, inner, call = await authenticate(db, stage_settings, headers)
    assert isinstance(result.error, InvalidApiKey) and result.status == 401
    assert "didn't provide an API key" in result.error_json()["message"]
    assert result.error_json()["code"] == "invalid_api_key"
    assert inner.calls == 0 and call.key is None


async def test_auth_takes_the_key_from_x_api_key_as_anthropic_clients_send_it(
    db: Database, stage_settings: Settings
) -> None:
    _, secret = await insert_key_with_account(db, name="xavier")
    result, _, call = await authenticate(db, stage_settings, [(b"x-api-key", secret.encode())])
    assert result.error is None and call.key is not None and call.key.name == "xavier"
    result, _, call = await authenticate(db, stage_settings, [(b"x-api-key", b"sk-tb-whatever")])
    assert isinstance(result.error, InvalidApiKey) and call.key is None


@pytest.mark.parametrize("value", [b"Basic YWxpY2U6c2VjcmV0", b"Token sk-tb-abc", b"sk-tb-no-scheme"])
async def test_auth_a_malformed_header_is_a_401(db: Database, stage_settings: Settings, value: bytes) -> None:
    await insert_key_with_account(db, name="carol")
    result, inner, call = await authenticate(db, stage_settings, [(b"authorization", value)])
    assert isinstance(result.error, InvalidApiKey) and result.status == 401
    assert inner.calls == 0 and call.key is None
    assert value.decode() not in result.error_json()["message"]


async def test_auth_an_unknown_key_is_a_401_that_does_not_echo_it(db: Database, stage_settings: Settings) -> None:
    await insert_key_with_account(db, name="dave")
    guess = new_secret()
    result, inner, call = await authenticate(db, stage_settings, bearer(guess))
    assert isinstance(result.error, InvalidApiKey) and result.status == 401
    assert result.error_json()["message"] == "Incorrect API key provided."
    assert guess not in result.error.body().decode() and guess[:12] not in result.error.body().decode()
    assert inner.calls == 0 and call.key is None


async def test_auth_a_revoked_key_is_a_401(db: Database, stage_settings: Settings) -> None:
    erin, secret = await insert_key_with_account(db, name="erin", credit=10**9)
    await revoke_key(db, erin.public_id)
    result, inner, call = await authenticate(db, stage_settings, bearer(secret))
    assert isinstance(result.error, InvalidApiKey) and result.status == 401
    assert result.error_json()["message"] == "This API key has been revoked."
    assert inner.calls == 0 and call.key is None


async def test_auth_a_key_revoked_while_cached_is_refused_once_the_cache_sees_the_change(
    db: Database, stage_settings: Settings
) -> None:
    frank, secret = await insert_key_with_account(db, name="frank")
    keys = KeyCache()
    keys.observe(await get_keys_version(db))
    stage = auth_stage(Inner(), db=db, keys=keys)
    first = await run_stage(stage, make_call(stage_settings, body=chat_body()), headers=bearer(secret))
    assert first.error is None and keys.get(hash_secret(secret)) is not None  # served from the cache from now on
    await revoke_key(db, frank.public_id)
    keys.observe(await get_keys_version(db))  # what the runtime's watcher does every KEY_CACHE_POLL_S
    again = await run_stage(stage, make_call(stage_settings, body=chat_body()), headers=bearer(secret))
    assert isinstance(again.error, InvalidApiKey) and again.status == 401


async def test_auth_an_expired_key_is_a_401(db: Database, stage_settings: Settings) -> None:
    _, secret = await insert_key_with_account(db, name="grace", credit=10**9, expires_at=time.time() - 1)
    result, inner, call = await authenticate(db, stage_settings, bearer(secret))
    assert isinstance(result.error, InvalidApiKey) and result.status == 401
    assert result.error_json()["message"] == "This API key has expired."
    assert inner.calls == 0 and call.key is None


async def test_auth_a_key_that_expires_later_is_taken(db: Database, stage_settings: Settings) -> None:
    _, secret = await insert_key_with_account(db, name="heidi", expires_at=time.time() + 3600)
    result, inner, _ = await authenticate(db, stage_settings, bearer(secret))
    assert result.error is None and inner.calls == 1


async def test_auth_a_model_outside_the_keys_allowlist_is_a_404_before_anything_runs(
    db: Database, stage_settings: Settings
) -> None:
    _, secret = await insert_key_with_account(db, name="ivan", models=("other-model",))
    result, inner, call = await authenticate(db, stage_settings, bearer(secret))
    assert isinstance(result.error, ModelNotFound) and result.status == 404
    assert MODEL in result.error_json()["message"]
    assert inner.calls == 0 and call.key is None


async def test_auth_the_callers_secret_goes_no_further_than_its_hash(db: Database, stage_settings: Settings) -> None:
    _, secret = await insert_key_with_account(db, name="judy")
    result, _, call = await authenticate(db, stage_settings, bearer(secret))
    assert result.error is None and call.key is not None
    # The Call (read by every inner stage, the usage row, the access line) carries the record, never the secret.
    assert secret not in repr(call) and secret not in repr(call.key)
    assert call.key.prefix == secret[: len(call.key.prefix)] and len(call.key.prefix) < len(secret) // 2


async def test_auth_a_disabled_key_or_a_key_of_a_disabled_account_is_a_401(
    db: Database, stage_settings: Settings
) -> None:
    paused, paused_secret = await insert_key_with_account(db, name="paused", credit=10**9)
    await update_key(db, paused.public_id, columns={"status": "disabled"})
    _, member_secret = await insert_key_with_account(db, name="member-key", account="member", credit=10**9)
    await update_account(db, "member", status="disabled")
    for secret, message in (
        (paused_secret, "This API key is disabled."),
        (member_secret, "The account of this API key is disabled."),
    ):
        result, inner, call = await authenticate(db, stage_settings, bearer(secret))
        assert isinstance(result.error, InvalidApiKey) and result.status == 401
        assert result.error_json()["message"] == message and result.error_json()["code"] == "invalid_api_key"
        assert inner.calls == 0 and call.key is None
    await update_account(db, "member", status="active")
    result, inner, _ = await authenticate(db, stage_settings, bearer(member_secret))
    assert result.error is None and inner.calls == 1


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "allowed"),
    [
        ("10.1.2.3", None, "", True),
        ("127.0.0.1", None, "", False),
        (None, None, "", False),  # an address the server does not know is in no list
        ("127.0.0.1", "10.1.2.3", "", False),  # a header from an untrusted peer means nothing
        ("127.0.0.1", "10.1.2.3", '"127.0.0.1"', True),
        ("127.0.0.1", "192.0.2.9", '"127.0.0.1"', False),
    ],
)
async def test_auth_a_key_with_allow_ips_refuses_callers_outside_them_with_403(
    tmp_path: Path, peer: str | None, forwarded: str | None, trusted: str, allowed: bool
) -> None:
    settings = write_settings(tmp_path)
    if trusted:
        text = settings.path.read_text() + f"\n[accounts]\ntrusted_proxies = [{trusted}]\n"
        settings.path.write_text(text)
        settings = load_settings(settings.path, environ={})
    async with open_store(settings) as db:
        _, secret = await insert_key_with_account(db, name="office", credit=10**9, allow_ips=("10.0.0.0/8",))
        headers = bearer(secret) + ([(b"x-forwarded-for", forwarded.encode())] if forwarded else [])
        inner = Inner()
        made = make_call(settings, body=chat_body())
        result = await run_stage(auth_stage(inner, db=db), made, headers=headers, client=(peer, 443) if peer else None)
    if allowed:
        assert result.error is None and inner.calls == 1
    else:
        assert isinstance(result.error, IpNotAllowed) and inner.calls == 0
        assert result.error.status == 403 and result.error.code == "ip_not_allowed"
