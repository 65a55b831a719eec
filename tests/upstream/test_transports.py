"""A transport per provider kind (upstream/client.py's TRANSPORTS): each takes the request as bytes.

No module branches on a channel's kind: it asks the channel's transport (or its capabilities).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import orjson

from tests.echo_config import echo_settings
from tokenbridge import settings as settings_module
from tokenbridge.adapters import wire_for
from tokenbridge.call import Call
from tokenbridge.routing import KIND_ROUTES
from tokenbridge.settings import Channel
from tokenbridge.upstream import client as client_module
from tokenbridge.upstream.client import TRANSPORTS, UpstreamClient
from tokenbridge.upstream.proxy import upstream_payload

PACKAGE = Path(__file__).parents[2] / "tokenbridge"
# A comparison with the provider kind: `channel.kind == "echo"`, `kind != "openai"`, `.kind in (...)`.
_KIND_TEST = re.compile(r"""\bkind\s*(?:[!=]=\s*["']|(?:not\s+)?in\s*[(\[{])""")


def echo_channel() -> Channel:
    return echo_settings(completions="native").channels[0]


def test_no_branch_on_the_provider_kind_outside_the_config_checks() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "settings.py"  # validation: which keys a kind allows
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _KIND_TEST.search(line)
    ]
    assert found == []


def test_every_configurable_kind_has_a_transport() -> None:
    assert set(TRANSPORTS) == set(settings_module.KINDS)


def test_every_kind_says_which_routes_it_can_carry() -> None:
    # A new kind needs its row in routing.KIND_ROUTES: the mapping stage tries a channel only for what it carries.
    assert set(KIND_ROUTES) == set(TRANSPORTS)


def test_the_proxy_hands_every_transport_bytes() -> None:
    channel = echo_channel()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}], "stream": True}
    call = Call(request_id="r", settings=echo_settings())
    call.body, call.raw_body, call.model, call.stream = body, orjson.dumps(body), "m", True
    payload = upstream_payload(call, channel, body)
    assert isinstance(payload, bytes)
    assert orjson.loads(payload)["stream_options"] == {"include_usage": True}  # asked for on the caller's behalf


async def test_the_echo_transport_reads_the_request_from_bytes() -> None:
    client = UpstreamClient(pool_limit=1)
    await client.start()
    try:
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "one two"}], "max_tokens": 1})
        response = await client.open(echo_channel(), "/chat/completions", body, stream=False)
        answer = orjson.loads(b"".join([chunk async for chunk in response.chunks()]))
    finally:
        await client.close()
    assert (response.status, response.media_type) == (200, "application/json")
    assert answer["choices"][0]["message"]["content"] == "one "
    assert answer["choices"][0]["finish_reason"] == "length"


def test_a_completions_request_to_the_echo_channel_goes_through_chat_even_if_native_is_set() -> None:
    # The echo answers chat only: its transport says so, the channel's kind is not looked at.
    channel = echo_channel()
    assert channel.completions == "native"
    assert wire_for("completions", channel) == "chat"
    http = Channel(
        name="up", kind="openai", base_url="http://127.0.0.1:9/v1", api_key="", models=("m",),
        model_map=MappingProxyType({}), completions="native",
    )  # fmt: skip
    assert wire_for("completions", http) == "completions"


def test_the_client_module_builds_no_answer_of_its_own() -> None:
    # Each answer comes from its kind's transport; the client only picks one from the table.
    assert "EchoResponse" not in Path(client_module.__file__).read_text()


async def test_the_echo_transport_answers_embeddings_with_a_whole_json_answer() -> None:
    client = UpstreamClient(pool_limit=1)
    await client.start()
    try:
        body = orjson.dumps({"model": "m", "input": ["one two", "three"], "dimensions": 4})
        response = await client.open(echo_channel(), "/embeddings", body, stream=False)
        whole = await response.read_whole(1 << 20)
        chunks = b"".join([chunk async for chunk in response.chunks()])
    finally:
        await client.close()
    assert (response.status, response.media_type, response.content_length) == (200, "application/json", len(chunks))
    assert whole == chunks
    answer = orjson.loads(chunks)
    assert [len(e["embedding"]) for e in answer["data"]] == [4, 4]
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # the echo's tokens: a word each
