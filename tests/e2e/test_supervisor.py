"""`serve --workers 2` when processes die: workers die with their supervisor, and a hold is released
only once the process that took it is gone (a killed worker's holds come back without a restart).

The tests SIGKILL real processes and look in /proc for them."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import PRICE, Gateway, config_text
from tests.e2e.test_chat import MESSAGES
from tests.e2e.test_first_run import Served
from tests.e2e.test_workers import Workers
from tests.fakes.procnet import children, connections_by_process, wait_exited
from tests.fakes.server import free_port
from tests.fakes.upstream import FakeUpstream
from tokenbridge.store.ledger import count_holds, sum_holds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills workers found in /proc")

MAX_TOKENS = 1000
BODY = orjson.dumps({"model": "fake-hold", "messages": MESSAGES, "max_tokens": MAX_TOKENS, "stream": True})
# The hold of one BODY: every body byte a prompt token, plus max_tokens (prices are USD per 1M tokens).
HOLD = len(BODY) * int(Decimal(PRICE["input"]) * 1000) + MAX_TOKENS * int(Decimal(PRICE["output"]) * 1000)


class HeldStreams:
    """Streams of BODY started in threads; each is in flight (its hold taken) once the fake holds it."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.threads: list[threading.Thread] = []
        self.results: list[bytes | str] = []

    def start(self, url: str, secret: str, count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=self._one, args=(url, secret), daemon=True)
            thread.start()
            self.threads.append(thread)
        for _ in range(count):
            assert self.fake.holding.acquire(timeout=60), "a stream never reached the upstream"

    def _one(self, url: str, secret: str) -> None:
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        try:
            with httpx.stream("POST", url + "/v1/chat/completions", content=BODY, headers=headers, timeout=60) as r:
                self.results.append(r.read())
        except httpx.HTTPError as exc:  # the worker serving it was killed
            self.results.append(type(exc).__name__)

    def join(self) -> list[bytes | str]:
        for thread in self.threads:
            thread.join(60)
        return self.results


def chat_status(url: str, secret: str) -> int:
    body = orjson.dumps({"model": "fake-ok", "messages": MESSAGES, "max_tokens": MAX_TOKENS})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    return httpx.post(url + "/v1/chat/completions", content=body, headers=headers, timeout=30).status_code


@pytest.fixture
def workers(upstream: tuple[FakeUpstream, str], tmp_path: Path) -> Iterator[tuple[Workers, Gateway]]:
    fake, url = upstream
    config = tmp_path / "config.toml"
    config.write_text(config_text(url))
    port = free_port()
    running = Workers(config, port)
    try:
        yield running, Gateway(f"http://127.0.0.1:{port}", config, fake)
    finally:
        fake.release()  # nothing stays held for the next test
        if running.served.process.poll() is None:
            running.served.process.terminate()
        for pid in running.pids:  # a worker that outlived a failed test must not outlive the test
            if not wait_exited(pid, 30):
                os.kill(pid, signal.SIGKILL)
        running.served.stop()


def test_supervisor_sigkill_stops_its_workers_and_a_second_serve_keeps_their_holds(
    workers: tuple[Workers, Gateway],
) -> None:
    running, gateway = workers
    secret = gateway.create_key("orphans", credit_usd=str(Decimal(2 * HOLD) / 10**9))  # credit for 2 held streams
    gateway.fake.arm()
    streams = HeldStreams(gateway.fake)
    streams.start(gateway.url, secret, 2)

    os.kill(running.served.process.pid, signal.SIGKILL)
    running.served.process.wait(30)
    running.served.until(r"Shutting down")  # each worker stops taking connections once its supervisor is gone
    running.served.until(r"Shutting down")

    port = free_port()
    second = Served(gateway.config, port)
    try:
        second.until(r"Uvicorn running on")
        url = f"http://127.0.0.1:{port}"
        # the live workers' chunks (one or two) still block both streams' holds, exactly (a small wallet: no spare)
        assert gateway.db_run(sum_holds) == 2 * HOLD, "the second serve released holds of live workers"
        assert chat_status(url, secret) == 429  # the two streams in flight still hold all the credit
        with pytest.raises(httpx.ConnectError):  # the orphans take no new request
            chat_status(gateway.url, secret)

        gateway.fake.release()
        results = streams.join()
        assert len(results) == 2 and all(isinstance(r, bytes) and r.endswith(b"data: [DONE]\n\n") for r in results)
        for pid in running.pids:
            assert wait_exited(pid, 60), f"worker {pid} outlived its supervisor"
        assert gateway.db_run(count_holds) == 0
        assert 0 <= gateway.balance("orphans") == gateway.ledger_sum("orphans")
        assert sorted(r["end_reason"] for r in gateway.usage("orphans")) == ["done", "done", "refused"]  # the 429
    finally:
        second.stop()


def test_a_killed_worker_s_holds_come_back_without_a_restart(workers: tuple[Workers, Gateway]) -> None:
    running, gateway = workers
    secret = gateway.create_key("killed-worker", credit_usd=str(Decimal(HOLD) / 10**9))  # credit for 1 held stream
    gateway.fake.arm()
    streams = HeldStreams(gateway.fake)
    streams.start(gateway.url, secret, 1)
    holder = next(pid for pid, n in connections_by_process(running.pids, running.port).items() if n)

    os.kill(holder, signal.SIGKILL)
    assert wait_exited(holder, 30)
    assert streams.join() != [], "the stream's thread did not end"
    running.served.until(r"released 1 hold")  # a worker (the replacement, or the other) saw its owner is gone

    gateway.fake.release()
    assert gateway.db_run(count_holds) == 0
    assert chat_status(gateway.url, secret) == 200  # the credit is free again
    replaced = [p for p in children(running.served.process.pid) if running.is_worker(p) and p not in running.pids]
    assert replaced, "the supervisor did not replace the killed worker"
    assert 0 <= gateway.balance("killed-worker") == gateway.ledger_sum("killed-worker")
