"""A real `tokenbridge serve`: /metrics sums every worker of `--workers 2`; the log is JSON when asked,
has one access line per request, and never holds a secret."""

from __future__ import annotations

import queue
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import FakeUpstream, Gateway
from tests.e2e.test_first_run import Served
from tests.fakes.server import free_port
from tests.test_metrics import (
    ADMIN_TOKEN,
    BROKEN_SECRET,
    CHANNEL_SECRET,
    chat,
    check_sequence_counted,
    config_for,
    known_sequence,
    scrape,
)

MAX_LINES = 5000  # a cap on lines read while waiting for one, in case the server dies
MAX_SCRAPES = 200  # scrapes on fresh connections until both workers have answered one


class Log:
    """The lines of a Served process, read as they come (every one of them kept in served.seen)."""

    def __init__(self, served: Served, *, json: bool) -> None:
        self.served = served
        self.json = json
        self.access: dict[str, Any] = {}  # request id -> its access line (parsed JSON, or the text)

    def until(self, found: Callable[[str], bool]) -> str:
        for _ in range(MAX_LINES):
            try:
                line = self.served.lines.get(timeout=60)
            except queue.Empty:
                break
            self.served.seen.append(line)
            if self.json:
                obj = orjson.loads(line)  # every line, uvicorn's included, is one JSON object
                if obj["logger"] == "tokenbridge.access":  # found by the X-Request-ID the test sent
                    self.access[obj["caller_request_id"]] = obj
            elif " tokenbridge.access: request_id=" in line:
                self.access[line.split(" caller_request_id=", 1)[1].split(" ", 1)[0]] = line
            if found(line):
                return line
        raise AssertionError("never printed what was awaited:\n" + "".join(self.served.seen[-50:]))

    def access_line(self, request_id: str) -> Any:
        if request_id not in self.access:
            self.until(lambda _: request_id in self.access)
        return self.access[request_id]


def assert_no_secret(served: Served, secrets: list[str]) -> None:
    output = "".join(served.seen)
    assert "tokenbridge.access" in output  # the grep read a real log
    for secret in secrets:
        assert secret not in output and secret.removeprefix("sk-tb-") not in output, "a secret reached the log"


@pytest.fixture
def config(upstream: tuple[FakeUpstream, str], tmp_path: Path) -> Iterator[Gateway]:
    fake, url = upstream
    path = tmp_path / "config.toml"
    path.write_text(config_for(url))
    yield Gateway(f"http://127.0.0.1:{free_port()}", path, fake)


def test_serve_workers_2_scrape_counts_every_worker_and_logs_json(config: Gateway) -> None:
    secret = config.create_key("workers", credit_usd="5")  # before the start: no first-run key is printed
    served = Served(config.config, int(config.url.rsplit(":", 1)[1]), "--workers", "2", "--log-format", "json")
    log = Log(served, json=True)
    try:
        for _ in range(2):
            log.until(lambda line: "Application startup complete" in line)
        before = scrape(config.url)
        statuses = known_sequence(config.url, secret)
        served_by = {log.access_line(rid)["pid"] for rid in statuses}
        rows = config.usage("workers")
        assert config.holds_returned() == 0  # each worker's chunk of the key went back once idle (purse.py)
        answered_by: set[int] = set()
        for _ in range(MAX_SCRAPES):  # whichever worker answers, the figures are the whole
            scrape_id = "scrape-" + uuid.uuid4().hex
            check_sequence_counted(before, scrape(config.url, scrape_id), rows)
            answered_by.add(log.access_line(scrape_id)["pid"])
            if len(answered_by) == 2:
                break
        assert len(answered_by) == 2, "one worker answered every scrape"
        assert served_by <= answered_by
        for rid, status in statuses.items():
            line = log.access_line(rid)
            assert line["status"] == status and line["key"] == (None if rid.startswith("wrong-key") else "workers")
    finally:
        served.stop()
    for line in served.seen:  # the last lines too (shutdown), none of them plain text
        assert orjson.loads(line)["level"] in ("INFO", "WARNING")
    assert_no_secret(served, [secret, CHANNEL_SECRET, BROKEN_SECRET, ADMIN_TOKEN, "sk-tb-" + "x" * 40])


def test_serve_log_never_holds_a_secret(config: Gateway) -> None:
    secrets = [config.create_key(f"grep-{i}", credit_usd="5") for i in range(2)]
    wrong = "sk-tb-" + uuid.uuid4().hex + "WRONGwrong"
    served = Served(config.config, int(config.url.rsplit(":", 1)[1]))
    log = Log(served, json=False)
    try:
        log.until(lambda line: "Uvicorn running on" in line)
        ids = [chat(config.url, secrets[0], "fake-ok")[0], chat(config.url, secrets[1], "fake-ok", stream=True)[0]]
        ids += [chat(config.url, secrets[0], "failover")[0], chat(config.url, wrong, "fake-ok")[0]]
        for bearer in (ADMIN_TOKEN, secrets[1], wrong):  # secrets where a careless caller might put them
            rid = "grep-" + uuid.uuid4().hex
            headers = {"Authorization": f"Bearer {bearer}", "X-Request-ID": rid}
            httpx.get(f"{config.url}/api/keys?token={bearer}", headers=headers, timeout=30)
            httpx.get(f"{config.url}/v1/models?api_key={bearer}", headers=headers, timeout=30)
            ids.append(rid)
        lines = [log.access_line(rid) for rid in ids]
        assert " key=grep-0 " in lines[0] and " status=200 " in lines[0] and " attempts=1 " in lines[0]
        assert " key=grep-1 " in lines[1] and " stream=true " in lines[1] and " end_reason=done " in lines[1]
        assert " channel=fake " in lines[2] and " attempts=2 " in lines[2]
        assert " key=- " in lines[3] and " status=401 " in lines[3]
    finally:
        served.stop()
    assert any("channel 'broken' failed" in line for line in served.seen)  # the failover was logged, secret-free
    assert_no_secret(served, [*secrets, wrong, CHANNEL_SECRET, BROKEN_SECRET, ADMIN_TOKEN])


def test_uvicorn_run_directly_logs_only_our_json_lines_and_no_query_string(config: Gateway) -> None:
    """The README's other way to serve: `uvicorn --factory tokenbridge.app:app_from_env`. uvicorn sets up its
    own text handlers and access log (which shows query strings) before it builds the app; ours replace them."""
    secret = config.create_key("direct", credit_usd="5")
    port = int(config.url.rsplit(":", 1)[1])
    command = [sys.executable, "-m", "uvicorn", "--factory", "tokenbridge.app:app_from_env", "--port", str(port)]
    env = {"TOKENBRIDGE_CONFIG": str(config.config), "TOKENBRIDGE_LOG_FORMAT": "json"}
    served = Served(config.config, port, command=command, env=env)
    log = Log(served, json=True)
    try:
        log.until(lambda line: "Uvicorn running on" in line)
        rid = "direct-" + uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {secret}", "X-Request-ID": rid}
        assert httpx.get(f"{config.url}/v1/models?api_key={secret}", headers=headers, timeout=30).status_code == 200
        assert log.access_line(rid)["path"] == "/v1/models"
    finally:
        served.stop()
    assert [orjson.loads(line)["logger"] for line in served.seen].count("tokenbridge.access") == 1
    assert not any("uvicorn.access" in line for line in served.seen)
    assert_no_secret(served, [secret])


def test_serve_log_errors_and_metrics_never_hold_a_password_session_code_or_key(
    upstream: tuple[FakeUpstream, str], tmp_path: Path
) -> None:
    """Issue 13, acceptance 9: every password, session token, code and key secret used in a run of the
    account API (signed up, signed in, guessed, changed, redeemed, made) is in no log line, no error
    answer and no scrape of /metrics."""
    fake, url = upstream
    path = tmp_path / "config.toml"
    path.write_text(config_for(url) + '\n[accounts]\nregistration = "open"\nsignup_credit_usd = 1\n')
    gateway = Gateway(f"http://127.0.0.1:{free_port()}", path, fake)
    gateway.create_key("before-start", credit_usd="1")  # so the first start prints no generated secret
    password, new_password, wrong = "first-PASSWORD-never-logged", "second-PASSWORD-never-logged", "WRONG-pw-guess"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    served = Served(path, int(gateway.url.rsplit(":", 1)[1]))
    log = Log(served, json=False)
    secrets: list[str] = [password, new_password, wrong, ADMIN_TOKEN, CHANNEL_SECRET]
    errors: list[str] = []
    try:
        log.until(lambda line: "Uvicorn running on" in line)
        with httpx.Client(base_url=gateway.url, headers={"Origin": gateway.url}, timeout=30) as browser:
            registered = browser.post("/api/register", json={"name": "grep-person", "password": password})
            assert registered.status_code == 201, registered.text
            secrets.append(browser.cookies["tb_session"])
            errors.append(browser.post("/api/session", json={"name": "grep-person", "password": wrong}).text)
            errors.append(browser.post("/api/session", json={"name": "grep-nobody", "password": password}).text)
            assert browser.post("/api/session", json={"name": "grep-person", "password": password}).status_code == 200
            secrets.append(browser.cookies["tb_session"])
            made = browser.post("/api/keys", json={"name": "grep-key"})
            assert made.status_code == 201, made.text
            key = made.json()["key"]
            secrets.append(key)
            codes = httpx.post(f"{gateway.url}/api/codes", json={"amount_usd": "1", "count": 2}, headers=admin).json()
            code, unused = (row["code"] for row in codes["data"])
            secrets += [code, unused]
            assert browser.post("/api/redeem", json={"code": code}).status_code == 200
            errors.append(browser.post("/api/redeem", json={"code": code}).text)  # used: invalid_code
            errors.append(browser.post(f"/api/redeem?code={unused}", json={"code": unused + "x"}).text)
            errors.append(httpx.get(f"{gateway.url}/api/me?session={secrets[-4]}", cookies={"tb_session": "x"}).text)
            assert chat(gateway.url, key, "fake-ok")[1] == 200
            errors.append(
                httpx.get(f"{gateway.url}/api/keys?key={key}", headers={"Authorization": f"Bearer {key}x"}).text
            )
            changed = httpx.patch(
                f"{gateway.url}/api/accounts/grep-person", json={"password": new_password}, headers=admin
            )
            assert changed.status_code == 200, changed.text
            errors.append(browser.get("/api/me").text)  # the password change ended the session
            errors.append(browser.post("/api/session", json={"name": "grep-person", "password": password}).text)
        metrics = httpx.get(gateway.url + "/metrics", timeout=30).text
        rid = "grep-end-" + uuid.uuid4().hex
        httpx.get(gateway.url + "/healthz", headers={"X-Request-ID": rid}, timeout=30)
        log.access_line(rid)  # every line of the requests before it is in
    finally:
        served.stop()
    assert len(errors) == 8 and all('"error"' in text for text in errors)
    assert "tokenbridge_requests_total" in metrics
    assert_no_secret(served, secrets)
    for secret in secrets:
        assert secret not in metrics, "a secret is in /metrics"
        assert not any(secret in text for text in errors), "a secret is in an error answer"
