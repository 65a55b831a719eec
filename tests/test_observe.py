"""The access log: one line per request, once it ended, with the usage row's figures, in text and in JSON."""

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from tests.conftest import FakeUpstream, Gateway
from tests.fakes.server import serve_in_thread
from tests.test_metrics import CHAT, chat, gateway_in
from tokenbridge.logs import TEXT_FORMAT, AccessLine, JsonFormatter, logfmt_value
from tokenbridge.metrics import Metrics
from tokenbridge.money import format_usd
from tokenbridge.observe import ObserveMiddleware
from tokenbridge.settings import load_settings
from tokenbridge.stages.intake import IntakeMiddleware

ACCESS = "tokenbridge.access"
FIELDS = [
    "request_id", "caller_request_id", "method", "path", "status", "key", "model", "channel", "stream", "prompt_tokens",
    "completion_tokens", "cached_tokens", "usage_source", "cost_usd", "cost_nano_usd", "latency_ms", "ttfb_ms",
    "end_reason", "attempts", "client",
]  # fmt: skip
_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


@pytest.fixture(scope="module")
def observed(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_in(tmp_path_factory.mktemp("observe"), upstream) as gateway:
        yield gateway


def parse_logfmt(text: str) -> dict[str, Any]:
    """A logfmt line back into values: quoted ones are JSON strings, "-" is None."""
    fields: dict[str, Any] = {}
    for name, raw in _LOGFMT.findall(text):
        fields[name] = orjson.loads(raw) if raw.startswith('"') else (None if raw == "-" else raw)
    return fields


def as_text(value: Any) -> str | None:
    """What a field reads as in a text line."""
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def access_records(caplog: pytest.LogCaptureFixture) -> dict[str, list[logging.LogRecord]]:
    """Access lines by the X-Request-ID the test sent (each line also names the gateway's own id)."""
    by_id: dict[str, list[logging.LogRecord]] = {}
    for record in caplog.records:
        if record.name == ACCESS:
            assert isinstance(record.msg, AccessLine)
            by_id.setdefault(record.msg.fields["caller_request_id"], []).append(record)
    return by_id


def run_requests(gateway: Gateway, secret: str) -> dict[str, int]:
    statuses = dict(
        chat(gateway.url, secret, model, stream=stream, tag="log")
        for model, stream in [("fake-ok", False), ("fake-cached", True), ("failover", False), ("fake-400", False)]
    )
    statuses.update([chat(gateway.url, "sk-tb-" + "y" * 40, "fake-ok", tag="wrong-key")])
    lost = "lost-" + uuid.uuid4().hex
    statuses[lost] = httpx.get(gateway.url + "/no/where?token=abc", headers={"X-Request-ID": lost}).status_code
    return statuses


def test_access_log_has_one_line_per_request_with_the_usage_rows_figures(
    observed: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    secret = observed.create_key("logged", credit_usd="5")
    with caplog.at_level(logging.INFO, logger=ACCESS):
        statuses = run_requests(observed, secret)
    records = access_records(caplog)
    assert {rid: len(records.get(rid, [])) for rid in statuses} == {rid: 1 for rid in statuses}
    lines = {rid: records[rid][0].msg.fields for rid in statuses}  # type: ignore[attr-defined]
    for rid, status in statuses.items():
        assert list(lines[rid]) == FIELDS and lines[rid]["status"] == status

    rows = {row["caller_request_id"]: row for row in observed.usage("logged")}
    assert len(rows) == 4
    for rid, row in rows.items():
        line = lines[rid]
        assert line["request_id"] == row["request_id"] != rid
        assert (line["key"], line["model"], line["channel"]) == ("logged", row["model"], row["channel"])
        assert (line["method"], line["path"], line["status"]) == ("POST", CHAT, row["status"])
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "usage_source", "end_reason", "attempts"):
            assert line[name] == row[name], name
        assert line["cost_nano_usd"] == row["cost"] and line["cost_usd"] == format_usd(row["cost"])
        assert line["latency_ms"] >= line["ttfb_ms"] > 0
    assert [lines[rid]["attempts"] for rid in rows if rid.startswith("log-failover")] == [2]

    wrong = next(lines[rid] for rid in statuses if rid.startswith("wrong-key"))
    assert (wrong["status"], wrong["key"], wrong["channel"], wrong["end_reason"]) == (401, None, None, "rejected")
    lost = next(lines[rid] for rid in statuses if rid.startswith("lost-"))
    assert (lost["method"], lost["path"], lost["status"], lost["end_reason"]) == ("GET", "/no/where", 404, "rejected")


def test_access_line_reads_back_the_same_in_text_and_json(observed: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    secret = observed.create_key("formats", credit_usd="5")
    with caplog.at_level(logging.INFO, logger=ACCESS):
        statuses = run_requests(observed, secret)
    records = access_records(caplog)
    text, json = logging.Formatter(TEXT_FORMAT), JsonFormatter()
    for rid in statuses:
        record = records[rid][0]
        fields = record.msg.fields  # type: ignore[attr-defined]
        line = text.format(record)
        assert (
            "\n" not in line and f" INFO {ACCESS}: request_id={fields['request_id']} caller_request_id={rid} " in line
        )
        assert parse_logfmt(line.split(": ", 1)[1]) == {k: as_text(v) for k, v in fields.items()}
        obj = orjson.loads(json.format(record))
        assert obj["logger"] == ACCESS and obj["level"] == "INFO" and obj["time"].endswith("Z")
        assert {k: obj[k] for k in FIELDS} == fields
        assert obj["message"] == f"{fields['method']} {fields['path']} {fields['status']}"


def test_access_line_names_the_key_holder_of_a_self_service_or_admin_read(
    observed: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    secret = observed.create_key("reader")
    with caplog.at_level(logging.INFO, logger=ACCESS):
        for path in ("/v1/me", "/v1/dashboard/billing/subscription", "/api/me"):
            answer = httpx.get(
                observed.url + path, headers={"Authorization": f"Bearer {secret}", "X-Request-ID": f"r{len(path)}"}
            )
            assert answer.status_code == 200, (path, answer.text)
    lines = [records[0].msg.fields for records in access_records(caplog).values()]  # type: ignore[attr-defined]
    assert sorted((line["path"], line["key"]) for line in lines) == [
        ("/api/me", "reader"), ("/v1/dashboard/billing/subscription", "reader"), ("/v1/me", "reader")
    ]  # fmt: skip
    assert all(secret not in str(line) for line in lines)


def test_access_log_writes_nothing_when_its_logger_is_off(observed: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    secret = observed.create_key("quiet")
    with caplog.at_level(logging.WARNING, logger=ACCESS):
        _, status = chat(observed.url, secret, "fake-ok")
    assert status == 200 and not access_records(caplog)


def test_route_label_of_a_route_with_parameters_is_its_template_not_the_values() -> None:
    metrics = Metrics()
    settings = load_settings(Path(__file__).parents[1] / "config.toml")

    async def thing(request: Request) -> Response:
        return Response(b"ok")

    async def leaf(request: Request) -> Response:
        return Response(b"leaf")

    app = Starlette(
        routes=[
            Route("/things/{name}", thing),
            Mount("/static", app=Response(b"file")),
            Mount("/nested", routes=[Route("/{part}", leaf)]),
        ],
        middleware=[
            Middleware(ObserveMiddleware, metrics=metrics),
            Middleware(IntakeMiddleware, settings=lambda: settings),
        ],
    )
    with serve_in_thread(app) as url:
        paths = ["/things/alice", "/things/bob", "/static/a.css", "/static/b.js", "/nested/x", "/nested/y"]
        assert [httpx.get(url + path).status_code for path in paths] == [200] * 6
    assert metrics.registry is not None
    [family] = [f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode()) if f.name ==
                "tokenbridge_requests"]  # fmt: skip
    assert {s.labels["route"]: s.value for s in family.samples if s.name.endswith("_total")} == {
        "/things/{name}": 2,
        "/static": 2,
        "/nested/{part}": 2,
    }


def test_logfmt_quotes_a_value_that_could_forge_a_field_or_a_line() -> None:
    line = str(AccessLine({"model": 'gpt x="1"\nFAKE', "path": "/v1/chat/completions", "ok": True, "n": None}))
    assert "\n" not in line
    assert parse_logfmt(line) == {"model": 'gpt x="1"\nFAKE', "path": "/v1/chat/completions", "ok": "true", "n": None}
    assert logfmt_value("a" * 500) == "a" * 200


def test_json_formatter_keeps_a_traceback_inside_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("tokenbridge", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    obj = orjson.loads(line)
    assert obj["message"] == "failed here" and "ValueError: boom" in obj["exc_info"] and obj["level"] == "ERROR"


class Waiter(logging.Handler):
    """Hands the test the access line of one request id as soon as it is written (no polling)."""

    def __init__(self, request_id: str) -> None:
        super().__init__()
        self.request_id = request_id
        self.fields: dict[str, Any] = {}
        self.written = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, AccessLine) and record.msg.fields["caller_request_id"] == self.request_id:
            self.fields = record.msg.fields
            self.written.set()


def test_a_caller_leaving_inside_its_body_counts_as_gone_not_as_a_bad_request(observed: Gateway) -> None:
    secret = observed.create_key("half-body")
    waiter = Waiter("half-body-1")
    access = logging.getLogger(ACCESS)
    access.addHandler(waiter)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        host, port = observed.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + secret.encode() + b"\r\nX-Request-ID: half-body-1\r\n"
                b'Content-Length: 5000\r\n\r\n{"model": "fake-ok", "mess'
            )  # then it leaves, 4,974 bytes short
        assert waiter.written.wait(30), "no access line for the request"
    finally:
        access.removeHandler(waiter)
        access.setLevel(level)
    assert (waiter.fields["status"], waiter.fields["end_reason"]) == (499, "client_gone")


def test_unicode_line_ends_from_a_caller_are_escaped_in_text_and_json_lines() -> None:
    path = "/x\u2028forged=1\x85y\u2029z"
    value = logfmt_value(path)
    assert len(value.splitlines()) == 1 and orjson.loads(value) == path
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, AccessLine({"path": path}), None, None)
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1 and orjson.loads(line)["path"] == path
