"""Settling against a real SQLite file: usage no request can have, and a settle that cannot be written
(issue 11, items 2 and 3)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import expected_cost
from tokenbridge.settings import load_settings
from tokenbridge.stages import quota

MESSAGES = [{"role": "user", "content": "hi"}]


def ask(gateway: Gateway, secret: str, model: str, *, stream: bool) -> None:
    client = gateway.client(secret)
    if stream:
        for _ in client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
            pass
    else:
        client.chat.completions.create(model=model, messages=MESSAGES)


@pytest.mark.parametrize("stream", [False, True])
def test_usage_past_any_one_request_is_estimated_and_every_summary_still_answers(
    admin_gateway: Gateway, stream: bool
) -> None:
    name = f"huge-{stream}"
    secret = admin_gateway.create_key(name, credit_usd="1")
    # 9e18 fits a SQLite INTEGER, but two such rows overflow SUM(); 2**63 does not fit at all.
    for model in ("fake-usage-9e18", "fake-usage-9e18", "fake-usage-2p63"):
        ask(admin_gateway, secret, model, stream=stream)
    rows = admin_gateway.usage(name)
    assert [r["model"] for r in rows] == ["fake-usage-9e18", "fake-usage-9e18", "fake-usage-2p63"]
    assert {r["usage_source"] for r in rows} == {"estimated"} and {r["status"] for r in rows} == {200}
    assert all(0 < r["prompt_tokens"] < 1000 and 0 < r["completion_tokens"] < 1000 for r in rows)
    assert all(r["cost"] > 0 for r in rows)
    assert admin_gateway.balance(name) == admin_gateway.ledger_sum(name) == 10**9 - sum(r["cost"] for r in rows)
    assert admin_gateway.holds_returned() == 0
    for path, params in [
        *(("/api/usage/summary", {"by": by}) for by in ("model", "key", "channel", "day")),
        ("/api/usage/series", {"bucket": "hour"}),
    ]:
        answer = admin_gateway.api("GET", path, params=params)
        assert answer.status_code == 200, (path, params, answer.text)
    answer = admin_gateway.api("GET", "/v1/dashboard/billing/usage", token=secret, params={"start_date": "2000-01-01"})
    assert answer.status_code == 200, answer.text
    for by in ("model", "key", "day"):
        done = admin_gateway.cli("usage", "--by", by)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextmanager
def unwritable(database: Path) -> Iterator[Callable[[], None]]:
    """Make the gateway's database refuse every write, to its open connections too (`chattr +i`
    on the file and its WAL: root ignores file modes, not the immutable flag); yields `restore`."""
    files = [database, database.with_name(database.name + "-wal")]
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make the database unwritable")
    try:
        chattr("+i", *files)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"chattr +i is refused here ({exc}): cannot make the database unwritable")
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            chattr("-i", *files)
            restored = True

    try:
        yield restore
    finally:
        restore()


def read_only(database: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the store while it refuses writes (Database.open would try to migrate)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def wait_for_row(gateway: Gateway, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20  # the settle is retried in the background; poll for the row it writes
    while not (rows := gateway.usage(name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_settle_that_cannot_be_written_withholds_the_answer_and_books_it_when_the_database_is_back(
    gateway: Gateway, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quota, "SETTLE_RETRY_DELAYS_S", (0.05,) * 400, raising=False)
    database = load_settings(gateway.config).server.database
    name = f"unwritable-{stream}"
    client = gateway.client(gateway.create_key(name, credit_usd="1"))
    gateway.fake.arm()

    def ask() -> list[str]:
        if not stream:
            client.chat.completions.create(model="fake-hold", messages=MESSAGES)
            return ["the whole answer"]
        texts: list[str] = []
        for chunk in client.chat.completions.create(model="fake-hold", messages=MESSAGES, stream=True):
            texts += [chunk.choices[0].delta.content or ""] if chunk.choices else []
        return texts

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask)
        assert gateway.fake.holding.acquire(timeout=20), "the request never reached the upstream"
        with unwritable(database) as restore:  # the hold is taken; the answer is on its way
            gateway.fake.release()
            with pytest.raises(openai.APIError) as caught:
                pending.result(timeout=20)
            # The caller got an error, not the answer: a 503 for JSON; for a stream the error event, no [DONE].
            error = caught.value
            if stream:
                assert not isinstance(error, openai.APIStatusError)
            else:
                assert isinstance(error, openai.InternalServerError) and error.status_code == 503
            assert isinstance(error.body, dict) and error.body.get("code") == "billing_unavailable", error.body
            # The hold still blocks the money, and nothing was charged or written yet.
            sql = "SELECT h.amount FROM holds h JOIN api_keys k ON k.id = h.key_id WHERE k.name = ?"
            holds = read_only(database, sql, name)
            assert len(holds) == 1 and holds[0][0] > 0
            assert read_only(database, "SELECT balance FROM accounts WHERE name = ?", name) == [(10**9,)]
            restore()
            row = wait_for_row(gateway, name)
    # Booked once the database took writes again: the stream's caller had its text and pays for it;
    # the JSON caller got nothing and pays nothing.
    assert row["end_reason"] == "store_error" and "could not record its charge" in row["error"]
    if stream:
        assert row["status"] == 200 and row["cost"] == expected_cost(12, 3) and row["usage_source"] == "upstream"
    else:
        assert row["status"] == 503 and row["cost"] == 0 and row["usage_source"] is None
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - row["cost"]
    assert gateway.holds_returned() == 0
