"""A chat stream as a Responses event stream, translated event by event as the chunks arrive (pure).

The first chat chunk opens the response (`response.created`, `response.in_progress`). Text opens
an assistant message (`response.output_item.added`, `response.content_part.added`) and each piece
is a `response.output_text.delta` (a refusal is the message's second part: `response.refusal.delta`);
each tool call opens a `function_call` item whose argument
pieces are `response.function_call_arguments.delta`s (a custom tool's input, sent to chat as one
JSON string argument, goes out whole when its call ends: `response.custom_tool_call_input.delta`
and `.done`). `data: [DONE]` closes every item in order (`*.done`, `response.output_item.done`) and
ends with `response.completed` (or `response.incomplete` where chat stopped at its length limit)
carrying the chat answer's usage: it is the stream's end event, and no `[DONE]` follows it.

Every event has the next `sequence_number`; `output_index` is the item's place in `output`, and
`item_id`s name the items, so an SDK's accumulator builds the same response the last event carries.
`sequence` says which number the next event takes (a broken stream's error event takes it).
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenbridge.responses import Body, ToolNames, as_object, as_text
from tokenbridge.responses_answer import call_item, envelope, finished, message_item, response_id
from tokenbridge.upstream.redact import stream_failure
from tokenbridge.upstream.sse import event_data

_DONE = b"[DONE]"


class _Call:
    """A tool call being streamed: its item, and its arguments so far."""

    __slots__ = ("index", "item_id", "call_id", "chat_name", "arguments")

    def __init__(self, index: int, item_id: str, call_id: str, chat_name: str) -> None:
        self.index, self.item_id, self.call_id, self.chat_name = index, item_id, call_id, chat_name
        self.arguments: list[str] = []


class ResponsesEvents:
    """Translates one chat stream for one Responses request (adapters.EventTranslator)."""

    __slots__ = (
        "request", "names", "sequence", "response", "output", "text", "text_index", "refusal", "calls", "finish",
        "usage", "secret",
    )  # fmt: skip

    def __init__(self, request: Body, *, secret: str = "") -> None:
        self.request = request
        self.secret = secret  # the channel's, masked out of an upstream error's message
        self.names = ToolNames(request.get("tools"))
        self.sequence = 0  # the next event's sequence_number
        self.response: Body | None = None  # opened by the first chunk
        self.output: list[tuple[int, Body]] = []  # the items done so far, with their output_index
        self.text: list[str] | None = None  # the open message's text; None while no message is open
        self.text_index = -1
        self.refusal: list[str] | None = None  # the open message's refusal (its second content part), once one came
        self.calls: dict[int, _Call] = {}  # by chat's tool call index
        self.finish: Any = None
        self.usage: Any = None

    def translate(self, event: bytes) -> bytes:
        data = event_data(event)
        if not data:
            return event  # a comment or a keep-alive
        if data == _DONE:
            return self._end()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event  # the meter ends such a stream with an error
        if not isinstance(chunk, dict):
            return event
        if "error" in chunk:  # ends the stream with the route's one error event, after the settle
            raise stream_failure(chunk, self.secret)
        out = self._open(chunk) if self.response is None else []
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:  # a Responses answer has one choice
                out += self._choice(choice)
        return b"".join(out)

    def _open(self, chunk: Body) -> list[bytes]:
        rid = response_id(chunk.get("id"))
        self.response = envelope(
            self.request, rid=rid, created=chunk.get("created"), model=chunk.get("model"), status="in_progress"
        )
        return [self._emit("response.created", response=self.response),
                self._emit("response.in_progress", response=self.response)]  # fmt: skip

    def _choice(self, choice: Body) -> list[bytes]:
        out: list[bytes] = []
        delta = as_object(choice.get("delta"))
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.text is None:
                out += self._open_message()
            assert self.text is not None
            self.text.append(content)
            out.append(self._emit("response.output_text.delta", **self._text_place(), delta=content, logprobs=[]))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            out += self._refusal_delta(refusal)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                out += self._tool_delta(call)
        if choice.get("finish_reason") is not None:
            self.finish = choice["finish_reason"]
        return out

    def _open_message(self) -> list[bytes]:
        assert self.response is not None
        self.text, self.text_index = [], len(self.output) + len(self.calls)
        item = message_item(self._message_id(), "", status="in_progress")
        item["content"] = []
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [self._emit("response.output_item.added", output_index=self.text_index, item=item),
                self._emit("response.content_part.added", **self._text_place(), part=part)]  # fmt: skip

    def _refusal_delta(self, piece: str) -> list[bytes]:
        out = self._open_message() if self.text is None else []
        place = {**self._text_place(), "content_index": 1}
        if self.refusal is None:
            self.refusal = []
            out.append(self._emit("response.content_part.added", **place, part={"type": "refusal", "refusal": ""}))
        self.refusal.append(piece)
        return [*out, self._emit("response.refusal.delta", **place, delta=piece)]

    def _message_id(self) -> str:
        assert self.response is not None
        return "msg_" + as_text(self.response["id"]).removeprefix("resp_")

    def _text_place(self) -> Body:
        return {"item_id": self._message_id(), "output_index": self.text_index, "content_index": 0}

    def _close_message(self) -> list[bytes]:
        if self.text is None:
            return []
        text, place = "".join(self.text), self._text_place()
        item = message_item(self._message_id(), text)
        out = [self._emit("response.output_text.done", **place, text=text, logprobs=[]),
               self._emit("response.content_part.done", **place, part=item["content"][0])]  # fmt: skip
        if self.refusal is not None:
            refused, second = {"type": "refusal", "refusal": "".join(self.refusal)}, {**place, "content_index": 1}
            item["content"].append(refused)
            out += [self._emit("response.refusal.done", **second, refusal=refused["refusal"]),
                    self._emit("response.content_part.done", **second, part=refused)]  # fmt: skip
        self.text = self.refusal = None
        self.output.append((place["output_index"], item))
        return [*out, self._emit("response.output_item.done", output_index=place["output_index"], item=item)]

    def _tool_delta(self, delta: Body) -> list[bytes]:
        out: list[bytes] = []
        index = delta.get("index", 0)
        function = as_object(delta.get("function"))
        call = self.calls.get(index)
        if call is None:
            out += self._close_message()  # text before a tool call is done when the call starts
            call_id, name = as_text(delta.get("id"), f"call_{index}"), as_text(function.get("name"))
            call = self.calls[index] = _Call(len(self.output) + len(self.calls), f"fc_{call_id}", call_id, name)
            item = call_item(call.item_id, call_id, self.names.tool(name), "", status="in_progress")
            out.append(self._emit("response.output_item.added", output_index=call.index, item=item))
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            call.arguments.append(piece)
            if not self.names.tool(call.chat_name).custom:  # a custom tool's input goes out whole, at its end
                out.append(self._emit("response.function_call_arguments.delta", item_id=call.item_id,
                                      output_index=call.index, delta=piece))  # fmt: skip
        return out

    def _close_call(self, call: _Call) -> list[bytes]:
        tool = self.names.tool(call.chat_name)
        item = call_item(call.item_id, call.call_id, tool, "".join(call.arguments))
        self.output.append((call.index, item))
        place = {"item_id": call.item_id, "output_index": call.index}
        if tool.custom:
            done = [self._emit("response.custom_tool_call_input.delta", **place, delta=item["input"]),
                    self._emit("response.custom_tool_call_input.done", **place, input=item["input"])]  # fmt: skip
        else:
            done = [self._emit("response.function_call_arguments.done", **place, name=tool.name,
                               arguments=item["arguments"])]  # fmt: skip
        return [*done, self._emit("response.output_item.done", output_index=call.index, item=item)]

    def _end(self) -> bytes:
        out = self._open({}) if self.response is None else []  # a stream of no chunks: it opens and ends here
        out += self._close_message()
        for call in self.calls.values():
            out += self._close_call(call)
        self.calls = {}
        output = [item for _, item in sorted(self.output, key=lambda placed: placed[0])]
        assert self.response is not None
        response = finished({**self.response, "output": output}, self.finish, self.usage)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        out.append(self._emit(kind, response=response))
        return b"".join(out)

    def _emit(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
