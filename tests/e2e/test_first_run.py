"""README command 1's path: `tokenbridge serve` on the shipped config.toml, first start on an empty database."""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import Gateway
from tests.fakes.server import free_port
from tests.schemas import validate
from tokenbridge.passwords import verify_password

SHIPPED_CONFIG = Path(__file__).parents[2] / "config.toml"
STARTUP_LINES = 200


class Served:
    """A `tokenbridge serve` process whose output lines are read as they come."""

    def __init__(
        self,
        config: Path,
        port: int,
        *options: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`tokenbridge serve` with `options`, or another `command` (uvicorn run directly) with `env` added."""
        serve = [sys.executable, "-m", "tokenbridge", "serve", "--config", str(config), "--port", str(port), *options]
        self.process = subprocess.Popen(
            command or serve,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.closing: list[Callable[[], None]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def until(self, pattern: str) -> re.Match[str]:
        """Read lines until one matches (an event, with a generous cap in case the server dies)."""
        for _ in range(STARTUP_LINES):
            line = self.lines.get(timeout=60)
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"never printed {pattern!r}:\n{''.join(self.seen)}")

    def stop(self) -> None:
        for close in self.closing:
            close()
        self.process.terminate()
        self.process.wait(30)
        self.reader.join(30)  # EOF once the process is gone
        assert self.process.stdout is not None
        self.process.stdout.close()
        while not self.lines.empty():  # keep every line it printed, for tests that read the whole log
            self.seen.append(self.lines.get_nowait())


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    config = tmp_path / "config.toml"
    shutil.copy(SHIPPED_CONFIG, config)
    yield config, free_port()


def test_first_run_prints_a_working_key_and_curl_line(shipped: tuple[Path, int]) -> None:
    config, port = shipped
    served = Served(config, port)
    try:
        served.until(r"created the account 'admin' \(role admin\)")
        password = served.until(r"^\s+([A-Za-z0-9_-]{24,})\s*$")[1]
        secret = served.until(r"^\s+(sk-tb-[A-Za-z0-9]{40})\s*$")[1]
        curl = served.until(r"^\s+(curl .*)$")[1]
        served.until(r"Uvicorn running on")
        assert secret in curl and f"127.0.0.1:{port}" in curl

        if shutil.which("curl"):
            answer = subprocess.run(shlex.split(curl) + ["-sS", "--fail-with-body"], capture_output=True, timeout=30)
            assert answer.returncode == 0, answer.stderr
            body = orjson.loads(answer.stdout)
        else:  # replay the printed line's request without curl
            import httpx

            args = shlex.split(curl)
            body = httpx.post(
                args[1],
                content=args[args.index("-d") + 1],
                headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            ).json()
        validate("CreateChatCompletionResponse", body)
        assert body["choices"][0]["message"]["content"] == "Hello, gateway!"

        from openai import OpenAI

        client = OpenAI(api_key=secret, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=20)
        served.closing.append(client.close)
        said = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "one two"}])
        assert said.choices[0].message.content == "one two"
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="echo-1", messages=[{"role": "user", "content": "one two three"}], stream=True
            )
            if c.choices
        )
        assert streamed == "one two three"
    finally:
        served.stop()

    database = config.parent / "tokenbridge.db"
    for path in config.parent.glob("tokenbridge.db*"):
        assert secret.encode() not in path.read_bytes(), f"plaintext key in {path.name}"
        assert password.encode() not in path.read_bytes(), f"plaintext password in {path.name}"
    assert database.exists()
    with sqlite3.connect(database) as conn:  # the key `default` spends from the admin account's demo credit
        [(role, stored, balance, key_name)] = conn.execute(
            "SELECT a.role, a.password_hash, a.balance, k.name FROM accounts a JOIN api_keys k ON k.account_id = a.id"
            " WHERE a.name = 'admin'"
        ).fetchall()
        ledger = conn.execute("SELECT SUM(amount) FROM ledger WHERE account_id = (SELECT id FROM accounts)").fetchall()
    assert (role, key_name) == ("admin", "default") and verify_password(password, stored)
    assert ledger == [(balance,)] and 0 < balance < 10**9  # $1 of demo credit, less the calls above

    again = Served(config, port)
    try:
        again.until(r"Uvicorn running on")
        assert not any("sk-tb-" in line for line in again.seen), "the key is printed on the first start only"
        assert not any(password in line for line in again.seen), "the password is printed on the first start only"
    finally:
        again.stop()


def test_store_never_holds_a_plaintext_key(gateway: Gateway) -> None:
    secrets = [gateway.create_key(f"grep-{i}") for i in range(3)]
    for secret in secrets:
        gateway.client(secret).chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "x"}])
    files = list(gateway.config.parent.glob("gateway.db*"))
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data and secret[6:].encode() not in data


def test_second_serve_on_the_same_database_is_refused(shipped: tuple[Path, int]) -> None:
    config, port = shipped
    first = Served(config, port)
    try:
        first.until(r"Uvicorn running on")
        second = subprocess.run(
            [sys.executable, "-m", "tokenbridge", "serve", "--config", str(config), "--port", str(free_port())],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 2
        assert "another `tokenbridge serve` is already using" in second.stderr
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # the first one still serves
    finally:
        first.stop()
