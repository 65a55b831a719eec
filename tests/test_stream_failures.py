"""An upstream's error chunk in a chat stream being translated (to Messages, to Responses, from
Messages) ends the caller's stream with the route's one error event: raised, never passed on as
it came, and never with the channel's secret in it."""

from __future__ import annotations

import orjson
import pytest

from tokenbridge.chat_messages_stream import ChatEvents
from tokenbridge.errors import UpstreamError
from tokenbridge.messages_stream import MessagesEvents
from tokenbridge.responses_stream import ResponsesEvents

SECRET = "sk-live-SECRET123456789"
CHAT_ERROR = b"data: " + orjson.dumps({"error": {"message": f"bad key {SECRET}", "type": "server_error"}}) + b"\n\n"
ANTHROPIC_ERROR = (
    b"event: error\ndata: "
    + orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": f"Overloaded {SECRET}"}})
    + b"\n\n"
)


@pytest.mark.parametrize(
    ("translator", "event"),
    [
        (MessagesEvents("m", secret=SECRET), CHAT_ERROR),
        (ResponsesEvents({"model": "m", "input": "hi"}, secret=SECRET), CHAT_ERROR),
        (ChatEvents(include_usage=False, secret=SECRET), ANTHROPIC_ERROR),
    ],
)
def test_an_upstream_error_chunk_raises_with_its_message_masked(translator: object, event: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        translator.translate(event)  # type: ignore[attr-defined]
    assert info.value.message.startswith("The upstream failed mid-stream: ")
    assert SECRET not in info.value.message and "SECRET123" not in info.value.message
