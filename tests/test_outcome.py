"""How a request ended (outcome.py): the meter's completion marker, and the one outcome() that the
usage row, the metrics and the access line are written from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest

from tokenbridge.asgi import Message
from tokenbridge.call import Call
from tokenbridge.errors import ClientGone, UpstreamError, UpstreamTimeout, unknown_model
from tokenbridge.money import Usage
from tokenbridge.outcome import CLIENT_CLOSED_REQUEST, Outcome, outcome
from tokenbridge.stages.meter import MeterMiddleware

PACKAGE = Path(__file__).parents[1] / "tokenbridge"
USAGE = Usage(3, 2)


def new_call(**fields: Any) -> Call:
    call = Call(request_id="req-o", settings=cast(Any, None))
    for name, value in fields.items():
        setattr(call, name, value)
    return call


@pytest.mark.parametrize(
    ("fields", "failure", "sent", "expected"),
    [
        # a whole answer, the upstream's status (a 4xx passed on is an answer too)
        ({"status": 200, "complete": True, "usage": USAGE}, None, 0, Outcome(200, "done", "", USAGE)),
        ({"status": 400, "complete": True}, None, 0, Outcome(400, "done", "", None)),
        # refused before any upstream: the error's status and message
        ({}, unknown_model("m"), 0, Outcome(404, "rejected", unknown_model("m").message, None)),
        # the meter's end reason, and the caller got the error rather than the upstream's status
        (
            {"status": 200, "end_reason": "timeout", "error": "slow"},
            UpstreamTimeout("slow"),
            0,
            Outcome(504, "timeout", "slow", None),
        ),
        # left before any byte: nginx's 499; left mid-stream: the status it had
        ({"end_reason": "client_gone"}, ClientGone(), 0, Outcome(499, "client_gone", "the caller disconnected", None)),
        (
            {"status": 200, "delivered": 10, "end_reason": "client_gone", "usage": USAGE},
            ClientGone(),
            0,
            Outcome(200, "client_gone", "", USAGE),
        ),
        # a bug: a bare 500 that names only the exception's type
        ({}, KeyError("secret"), 0, Outcome(500, "rejected", "KeyError in the gateway", None)),
        # what went out, as observe sees it outside intake (a route without the pipeline, say)
        ({}, None, 404, Outcome(404, "rejected", "", None)),
        ({}, None, 200, Outcome(200, "done", "", None)),
        ({}, None, 0, Outcome(499, "client_gone", "the caller disconnected", None)),
        (
            {"status": 200, "delivered": 5, "end_reason": "upstream_error"},
            None,
            200,
            Outcome(200, "upstream_error", "", None),
        ),
    ],
)
def test_outcome_of_each_way_a_request_ends(
    fields: dict[str, Any], failure: BaseException | None, sent: int, expected: Outcome
) -> None:
    assert outcome(new_call(**fields), failure, sent=sent) == expected


def test_an_end_reason_written_after_completion_wins() -> None:
    # quota's store_error: the answer was complete, its charge could not be written
    assert outcome(new_call(status=200, complete=True, end_reason="store_error"), None).end_reason == "store_error"


def test_client_closed_request_is_defined_once() -> None:
    assert CLIENT_CLOSED_REQUEST == 499
    found = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.search(r"\b499\b", line)
    ]
    assert set(found) == {"outcome.py"}  # named anywhere else, it is defined anywhere else


def test_done_is_not_a_signal_anyone_reads() -> None:
    # The completion marker is call.complete; an end reason is only read through outcome().
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"""end_reason\s*[!=]=|end_reason\s*=\s*["']done""", line)
    ]
    assert found == []


@pytest.mark.parametrize("stream", [False, True])
async def test_the_meter_marks_the_answer_complete_before_the_message_that_completes_it(stream: bool) -> None:
    body = b'data: {"choices":[]}\n\ndata: [DONE]\n\n' if stream else b'{"choices":[]}'
    kind = b"text/event-stream" if stream else b"application/json"
    call = new_call(status=0, model="m", stream=stream)
    call.body = call.upstream_body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    seen: list[tuple[bool, bool]] = []  # (more_body, complete) of each body message, as it goes out

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            seen.append((message.get("more_body", False), call.complete))
        call.delivered += len(message.get("body", b""))

    await MeterMiddleware(inner)({"type": "http", "tokenbridge.call": call}, cast(Any, None), send)
    assert seen == [(True, True), (False, True)]
    assert outcome(call, None).end_reason == "done"


async def test_the_meter_leaves_a_broken_answer_incomplete() -> None:
    call = new_call(status=0, model="m", stream=True)
    call.body = call.upstream_body = {"model": "m", "messages": [], "stream": True}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        raise UpstreamError("broke")

    async def send(message: Message) -> None:
        pass

    with pytest.raises(UpstreamError):
        await MeterMiddleware(inner)({"type": "http", "tokenbridge.call": call}, cast(Any, None), send)
    assert not call.complete
    assert outcome(call, UpstreamError("broke")) == Outcome(502, "upstream_error", "broke", None)
