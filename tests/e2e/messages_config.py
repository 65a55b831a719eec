"""The gateway the /v1/messages tests run: an anthropic channel, an openai channel and the echo, all
pointing at the fake upstream (tests/fakes/upstream.py and tests/fakes/anthropic.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import UPSTREAM_SECRET, Gateway, serve_config
from tests.fakes.upstream import FakeUpstream

CLAUDE_MODELS = ["claude-ok", "claude-cached", "claude-tool", "claude-break", "claude-hold", "claude-error-event",
                 "claude-nousage", "claude-400", "claude-529"]  # fmt: skip
CHAT_MODELS = ["fake-ok", "fake-cached", "fake-roundtrip", "fake-break", "fake-hold", "fake-400", "fake-500"]
# nano-USD per 1M tokens, distinct per term so each shows in a cost
CLAUDE_PRICE = {"input": 3_000_000_000, "cached_input": 300_000_000, "cache_write": 3_750_000_000,
                "output": 15_000_000_000}  # fmt: skip
CHAT_PRICE = {"input": 1_500_000_000, "cached_input": 500_000_000, "cache_write": 2_000_000_000,
              "output": 4_000_000_000}  # fmt: skip

CONFIG = """
[server]
database = "messages.db"
watch_config = false

[[channels]]
name = "claude"
kind = "anthropic"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = {claude}

[[channels]]
name = "chat"
base_url = "{upstream}/v1"
api_key = "{secret}"
models = {chat}

[[channels]]
name = "demo"
kind = "echo"
models = ["echo-1"]

{prices}
"""


def _price(model: str, price: dict[str, int]) -> str:
    return f'[models."{model}"]\n' + "".join(f"{term} = {nano / 1e9!r}\n" for term, nano in price.items())


def config_text(upstream: str) -> str:
    prices = [_price(m, CLAUDE_PRICE) for m in CLAUDE_MODELS] + [_price(m, CHAT_PRICE) for m in CHAT_MODELS]
    prices.append(_price("echo-1", {"input": 1_000_000_000, "output": 2_000_000_000}))
    quoted = lambda models: "[" + ", ".join(f'"{m}"' for m in models) + "]"  # noqa: E731
    return CONFIG.format(
        upstream=upstream, secret=UPSTREAM_SECRET, claude=quoted(CLAUDE_MODELS), chat=quoted(CHAT_MODELS),
        prices="\n".join(prices),
    )  # fmt: skip


def serve_messages_gateway(
    upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    fake, url = upstream
    yield from serve_config(config_text(url), tmp_path_factory, fake)


def cost_of(price: dict[str, int], *, prompt: int, completion: int, cached: int = 0, written: int = 0) -> int:
    """What the price list says, worked out here on its own: the exact rational, rounded up once."""
    per_million = (prompt - cached - written) * price["input"] + cached * price["cached_input"]
    per_million += written * price.get("cache_write", price["input"]) + completion * price["output"]
    return -(-per_million // 1_000_000)
