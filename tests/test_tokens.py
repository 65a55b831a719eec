"""Offline token counts: the shipped BPE files load with the network cut off."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from tokenbridge import tokens

NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise SystemExit(f"network call: {args!r}")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
import orjson
import pytest

from tokenbridge import tokens
print(tokens.count("Hello from fake", "gpt-4o"), tokens.count("Hello from fake", "gpt-4"))
print(tokens.encoding_name("some-unknown-model"))
"""


def test_tokens_load_and_count_with_the_network_cut_off() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.split() == ["3", "3", "o200k_base"]


def test_tokens_chat_prompt_follows_openai_counting() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello", "name": "ann"},
        ]
    }
    enc = tokens.encoding("o200k_base")

    def n(text: str) -> int:
        return len(enc.encode(text))

    expected = 3 + (3 + n("system") + n("Be brief.")) + (3 + n("user") + n("Say hello") + 1 + n("ann"))
    assert tokens.prompt_tokens(body, "gpt-4o") == expected


def test_tokens_known_models_pick_their_encoding() -> None:
    assert tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_name("gpt-3.5-turbo") == "cl100k_base"
    assert tokens.encoding_name("llama3.2") == "o200k_base"


def test_tokens_leave_the_environment_as_they_found_it() -> None:
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    tokens.load_encoding.cache_clear()
    tokens.encoding("cl100k_base")
    assert os.environ.get("TIKTOKEN_CACHE_DIR") == before


def test_tokens_first_estimates_started_together_load_an_encoding_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent first estimates (each in its own worker thread) share one load, not one each."""
    loads: list[str] = []
    real = tokens.load_tiktoken_bpe

    def counted(path: str, **kwargs: Any) -> dict[bytes, int]:
        loads.append(path)
        return real(path, **kwargs)

    tokens.load_encoding.cache_clear()
    monkeypatch.setattr(tokens, "load_tiktoken_bpe", counted)
    start = threading.Barrier(8)

    def first_estimate() -> None:
        start.wait()
        tokens.encoding("cl100k_base")

    threads = [threading.Thread(target=first_estimate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tokens.load_encoding.cache_clear()
    assert len(loads) == 1, loads


def test_tokens_load_the_shipped_files_without_writing_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.environ is process-wide: a load that sets a variable, even for a moment, changes it for every
    thread (another library's tiktoken load among them). A read-only environment proves none is set."""
    tokens.load_encoding.cache_clear()
    with monkeypatch.context() as patch:  # undone before pytest itself writes PYTEST_CURRENT_TEST again
        patch.setattr(os, "environ", MappingProxyType(dict(os.environ)))
        try:
            assert len(tokens.encoding("cl100k_base").encode("Hello from fake")) == 3
            assert len(tokens.encoding("o200k_base").encode("Hello from fake")) == 3
        finally:
            tokens.load_encoding.cache_clear()


def n(text: str) -> int:
    return len(tokens.encoding("o200k_base").encode(text))


WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = {"role": "user", "content": "Weather in Paris?"}


def test_tokens_prompt_counts_each_tool_as_its_definition_text() -> None:
    bare = tokens.prompt_tokens({"messages": [ASK]}, "gpt-4o")
    tools = [{"type": "function", "function": WEATHER}]
    definition = n(orjson.dumps(WEATHER).decode())
    assert tokens.prompt_tokens({"messages": [ASK], "tools": tools}, "gpt-4o") == bare + definition
    assert tokens.prompt_tokens({"messages": [ASK], "functions": [WEATHER]}, "gpt-4o") == bare + definition


def test_tokens_prompt_counts_assistant_tool_calls_and_tool_answers() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    called = {"role": "assistant", "content": None, "tool_calls": [call]}
    answered = {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}
    expected = 3 + (3 + n("user") + n("Weather in Paris?"))
    expected += 3 + n("assistant") + n("get_weather") + n('{"city":"Paris"}')
    expected += 3 + n("tool") + n("18 C, sunny")
    assert tokens.prompt_tokens({"messages": [ASK, called, answered]}, "gpt-4o") == expected
    legacy = {"role": "assistant", "content": None, "function_call": call["function"]}
    assert tokens.prompt_tokens({"messages": [ASK, legacy]}, "gpt-4o") == expected - (3 + n("tool") + n("18 C, sunny"))


def image(url: str, detail: str | None = None) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}}


@pytest.mark.parametrize(
    ("model", "detail", "expected"),
    [
        ("gpt-4o", "low", 85),  # OpenAI's tile formula: low detail is the base alone
        ("gpt-4o", "high", 85 + 8 * 170),  # size unknown to the gateway: the largest, 8 tiles of 512 px
        ("gpt-4o", None, 85 + 8 * 170),
        ("gpt-4o-mini", "high", 2833 + 8 * 5667),
        ("some-unknown-model", "low", 85),
    ],
)
def test_tokens_prompt_counts_image_parts_by_openai_tile_formula(model: str, detail: str | None, expected: int) -> None:
    text = {"type": "text", "text": "What is this?"}
    bare = tokens.prompt_tokens({"messages": [{"role": "user", "content": [text]}]}, model)
    url = "data:image/png;base64," + "A" * 4000
    body = {"messages": [{"role": "user", "content": [text, image(url, detail)]}]}
    assert tokens.prompt_tokens(body, model) == bare + expected


def test_tokens_image_part_ceiling_is_the_most_any_listed_model_bills() -> None:
    worst = max(tokens.image_tokens(image("https://x/a.png", "high"), m) for m in ("gpt-4o", "gpt-4o-mini", "o1"))
    assert tokens.IMAGE_PART_MAX_TOKENS == worst == 2833 + 8 * 5667


def data_url(kind: str, header: bytes) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(header + bytes(600)).decode()


def png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big")


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + bytes(9)
    exif = b"\xff\xe1" + (3002).to_bytes(2, "big") + bytes(3000)  # metadata before the frame header
    sof0 = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + app0 + exif + sof0 + bytes(10)


@pytest.mark.parametrize(
    ("url", "size"),
    [
        (data_url("png", png(1024, 768)), (1024, 768)),
        (data_url("gif", b"GIF89a" + (300).to_bytes(2, "little") + (200).to_bytes(2, "little")), (300, 200)),
        (data_url("jpeg", jpeg(4032, 3024)), (4032, 3024)),
        (data_url("webp", b"RIFF\x00\x00\x00\x00WEBPVP8X" + bytes(8) + (1919).to_bytes(3, "little") * 2), (1920, 1920)),
        ("https://example.com/a.png", None),
        ("data:image/png;base64,not base64 at all!", None),
        (data_url("png", b"\x89PNG but cut"), None),
    ],
)
def test_tokens_image_size_read_from_a_data_url_header(url: str, size: tuple[int, int] | None) -> None:
    assert tokens.image_size(url) == size


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (png(1024, 1024), 85 + 4 * 170),  # OpenAI's examples: scaled to 768×768, 4 tiles
        (jpeg(2048, 4096), 85 + 6 * 170),  # to fit 2048: 1024×2048; short side 768: 768×1536, 6 tiles
        (png(100, 100), 85 + 170),  # small images are not scaled up
        (png(2048, 768), 85 + 8 * 170),
    ],
)
def test_tokens_image_of_known_size_counts_its_tiles(header: bytes, expected: int) -> None:
    assert tokens.image_tokens(image(data_url("png", header), "high"), "gpt-4o") == expected
    assert tokens.image_tokens(image(data_url("png", header), "low"), "gpt-4o") == 85


def test_an_anthropic_body_counts_its_system_prompt_tool_blocks_and_images() -> None:
    turns = [
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "sunny and warm"}]}]},
    ]  # fmt: skip
    plain = {"model": "m", "max_tokens": 5, "messages": turns}
    with_system = {**plain, "system": [{"type": "text", "text": "You are a weather bot."}]}
    image = {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}
    with_image = {**plain, "messages": [*turns, {"role": "user", "content": [image]}]}
    bare = tokens.prompt_tokens({"model": "m", "messages": [{"role": m["role"], "content": ""} for m in turns]}, "m")
    assert tokens.prompt_tokens(plain, "m") > bare + tokens.count("get_weather", "m") + tokens.count(
        "sunny and warm", "m"
    )
    assert tokens.prompt_tokens(with_system, "m") == tokens.prompt_tokens(plain, "m") + tokens.count(
        "You are a weather bot.", "m"
    )
    assert (
        tokens.prompt_tokens(with_image, "m") > tokens.prompt_tokens(plain, "m") + 1000
    )  # an unknown size: the most tiles


def test_prompt_tokens_of_a_responses_request_count_as_its_chat_messages() -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    responses = {"model": "m", "instructions": "Be brief.", "tools": tools, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c", "output": "done"},
    ]}  # fmt: skip
    chat = {"model": "m", "tools": tools, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
        {"role": "", "content": 'f{"a": 1}'}, {"role": "", "content": "done"},
    ]}  # fmt: skip
    assert tokens.prompt_tokens(responses, "gpt-4o") == tokens.prompt_tokens(chat, "gpt-4o") > 0
    assert tokens.prompt_tokens({"model": "m", "input": "Hi"}, "gpt-4o") == tokens.prompt_tokens(
        {"messages": [{"role": "user", "content": "Hi"}]}, "gpt-4o"
    )
