"""Concurrent load through the official openai SDK, recording every answer its callers got complete.

Threads alternate JSON answers and streams (with include_usage, so the caller sees what it is billed
for) until stopped. `wait_for(n)` returns once n answers completed: a real condition, never a sleep.
Answers cut by a killed gateway are not recorded: only what a caller received whole counts."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from tests.e2e.test_chat import MESSAGES, expected_cost
from tests.e2e.test_first_run import Served
from tests.fakes.server import free_port

ANSWER_TIMEOUT_S = 120.0  # a cap for wait_for, in case the gateway died: never waited out when it serves


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: str  # the gateway's x-request-id: its usage row's and charge's key
    stream: bool
    prompt_tokens: int
    completion_tokens: int


class Load:
    """`threads` callers of `model` on `base_url` with `key`, started at once, until `stop()`."""

    def __init__(self, base_url: str, key: str, *, threads: int = 6, model: str = "fake-ok") -> None:
        self.answers: list[Answer] = []
        self.failures: list[str] = []  # what callers got instead of an answer (a killed gateway's cut streams)
        self._model = model
        self._stopping = threading.Event()
        self._done = threading.Condition()
        self._clients = [
            openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=60) for _ in range(threads)
        ]
        self._threads = [
            threading.Thread(target=self._run, args=(c, n), daemon=True) for n, c in enumerate(self._clients)
        ]
        for thread in self._threads:
            thread.start()

    def wait_for(self, count: int) -> None:
        with self._done:
            assert self._done.wait_for(
                lambda: len(self.answers) >= count or self._stopping.is_set(), ANSWER_TIMEOUT_S
            ), f"only {len(self.answers)} answers, failures: {self.failures[:3]}"
        assert len(self.answers) >= count, f"only {len(self.answers)} answers, failures: {self.failures[:3]}"

    def stop(self) -> list[Answer]:
        self._stopping.set()
        for thread in self._threads:
            thread.join(ANSWER_TIMEOUT_S)
        for client in self._clients:
            client.close()
        return list(self.answers)

    def _run(self, client: openai.OpenAI, n: int) -> None:
        stream = n % 2 == 1
        while not self._stopping.is_set():
            try:
                answer = self._stream(client) if stream else self._json(client)
            except (openai.APIError, openai.APIConnectionError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, openai.APIConnectionError):
                    return  # the gateway is gone
                continue
            with self._done:
                self.answers.append(answer)
                self._done.notify_all()
            stream = not stream

    def _json(self, client: openai.OpenAI) -> Answer:
        raw = client.chat.completions.with_raw_response.create(model=self._model, messages=MESSAGES, max_tokens=50)
        usage = raw.parse().usage
        assert usage is not None
        return Answer(raw.headers["x-request-id"], False, usage.prompt_tokens, usage.completion_tokens)

    def _stream(self, client: openai.OpenAI) -> Answer:
        with client.chat.completions.with_streaming_response.create(
            model=self._model, messages=MESSAGES, max_tokens=50, stream=True, stream_options={"include_usage": True}
        ) as raw:
            usage: Any = None
            for chunk in raw.parse():  # every event, to the end: [DONE] closes the SDK's iterator
                usage = chunk.usage or usage
            assert usage is not None, "a stream ended without its usage chunk"
            return Answer(raw.headers["x-request-id"], True, usage.prompt_tokens, usage.completion_tokens)


def money_of(database: Path) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int, int]]]:
    """Read straight from the file with sqlite3, not through tokenbridge: per account (balance,
    SUM(ledger.amount)); per usage row (prompt_tokens, completion_tokens, -its charge's amount)."""
    with sqlite3.connect(database) as conn:
        wallets = {
            name: (balance, ledger)
            for name, balance, ledger in conn.execute(
                "SELECT a.name, a.balance, COALESCE(SUM(l.amount), 0) FROM accounts a"
                " LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id"
            )
        }
        rows = {
            request_id: (prompt, completion, -(charged or 0))
            for request_id, prompt, completion, charged in conn.execute(
                "SELECT u.request_id, u.prompt_tokens, u.completion_tokens, l.amount FROM usage_events u"
                " LEFT JOIN ledger l ON l.request_id = u.request_id AND l.kind = 'charge'"
            )
        }
    return wallets, rows


def assert_every_answer_booked(database: Path, answers: list[Answer]) -> None:
    """Every answer a caller received complete has its usage row, charged what SPEC §6 says for the
    usage the caller saw; every wallet's balance equals the sum of its ledger."""
    wallets, rows = money_of(database)
    assert wallets and all(balance == ledger for balance, ledger in wallets.values()), wallets
    missing = [a.request_id for a in answers if a.request_id not in rows]
    assert not missing, f"{len(missing)} of {len(answers)} completed answers have no usage row: {missing[:5]}"
    for answer in answers:
        prompt, completion, charged = rows[answer.request_id]
        assert (prompt, completion) == (answer.prompt_tokens, answer.completion_tokens), answer
        assert charged == expected_cost(prompt, completion) > 0, answer


@contextmanager
def serving(config: Path) -> Iterator[tuple[Served, str]]:
    """A real `tokenbridge serve` on `config` and a free port, started; its /v1 URL. Stopped after."""
    port = free_port()
    served = Served(config, port)
    try:
        served.until(r"Uvicorn running on")
        yield served, f"http://127.0.0.1:{port}/v1"
    finally:
        served.stop()


def answers_once_more(config: Path, secret: str) -> None:
    """`serve` on `config` again (a restored file): the old key still gets an answer."""
    with serving(config) as (served, url):
        client = openai.OpenAI(api_key=secret, base_url=url, max_retries=0, timeout=20)
        served.closing.append(client.close)
        assert client.chat.completions.create(model="fake-ok", messages=MESSAGES).choices[0].message.content
