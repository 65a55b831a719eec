"""/v1/messages through a 0.x release of the official `anthropic` SDK (x-api-key, anthropic-version
2023-06-01), the calls its users' code makes, on an anthropic and an openai channel.

The old SDK cannot share the test venv with the latest one, so it gets a venv of its own in a cache
dir outside the repo, built once from PyPI (`pip install anthropic==SDK0_VERSION`), and runs
tests/e2e/sdk0_client.py there. Without PyPI this skips, saying why; TOKENBRIDGE_REQUIRE_SDK0=1 (and
TOKENBRIDGE_REQUIRE_CLAUDE_CODE=1, which .ci/run sets) turns that into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import UPSTREAM_SECRET, Gateway
from tests.e2e.messages_config import CHAT_PRICE, CLAUDE_PRICE, cost_of, serve_messages_gateway
from tests.fakes import anthropic as fake_claude
from tests.fakes.upstream import FakeUpstream

SDK0_VERSION = "0.49.0"
SDK0_DIR = Path.home() / ".cache" / "tokenbridge-tests" / f"anthropic-{SDK0_VERSION}"
SCRIPT = Path(__file__).with_name("sdk0_client.py")


def sdk0_python() -> Path:
    python = SDK0_DIR / "bin" / "python"
    marker = SDK0_DIR / "installed"
    if marker.exists():
        return python
    steps = ([sys.executable, "-m", "venv", "--clear", str(SDK0_DIR)],
             [str(python), "-m", "pip", "install", "-q", f"anthropic=={SDK0_VERSION}"])  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            problem = f"could not build a venv with anthropic=={SDK0_VERSION}: {done.stderr[-500:]}"
            if "1" in (os.environ.get("TOKENBRIDGE_REQUIRE_SDK0"), os.environ.get("TOKENBRIDGE_REQUIRE_CLAUDE_CODE")):
                pytest.fail(problem)
            pytest.skip(problem)
    marker.write_text(SDK0_VERSION)
    return python


@pytest.fixture(scope="module")
def python0() -> Path:
    return sdk0_python()


@pytest.fixture(scope="module")
def site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_messages_gateway(upstream, tmp_path_factory)


def run_sdk0(python: Path, site: Gateway, key: str, text_model: str, tool_model: str) -> dict[str, object]:
    done = subprocess.run(
        [str(python), str(SCRIPT), site.url, key, text_model, tool_model], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = orjson.loads(done.stdout)
    assert result["version"] == SDK0_VERSION
    return result


def test_sdk0_on_an_anthropic_channel(python0: Path, site: Gateway) -> None:
    key = site.create_key("sdk0-claude")
    result = run_sdk0(python0, site, key, "claude-cached", "claude-tool")
    assert result["created"] == result["streamed"] == {
        "text": fake_claude.TEXT, "usage": {"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 6}
    }  # fmt: skip
    assert result["tool"] == {"name": "get_weather", "input": {"city": "Paris"}, "stop_reason": "tool_use"}
    assert result["answered"] == "The tool said: sunny" and result["count"] == fake_claude.COUNT_TOKENS
    seen = [s for s in site.fake.seen if s.body.get("model") in ("claude-cached", "claude-tool")][-5:]
    assert {s.headers["anthropic-version"] for s in seen} == {"2023-06-01"}  # the caller's, forwarded
    assert {s.headers["x-api-key"] for s in seen} == {UPSTREAM_SECRET}
    rows = site.usage("sdk0-claude")
    assert site.balance("sdk0-claude") == 10**9 - sum(r["cost"] for r in rows) == site.ledger_sum("sdk0-claude")
    cached = [r for r in rows if r["model"] == "claude-cached"]
    assert [(r["prompt_tokens"], r["cached_tokens"], r["cache_write_tokens"]) for r in cached] == [(14, 6, 3)] * 2
    assert {r["cost"] for r in cached} == {cost_of(CLAUDE_PRICE, prompt=14, completion=3, cached=6, written=3)}
    tools = [r for r in rows if r["model"] == "claude-tool"]
    assert [r["cost"] for r in tools] == [
        cost_of(CLAUDE_PRICE, prompt=12, completion=fake_claude.TOOL_OUTPUT_TOKENS),
        cost_of(CLAUDE_PRICE, prompt=12, completion=2),
    ]


def test_sdk0_on_an_openai_channel(python0: Path, site: Gateway) -> None:
    key = site.create_key("sdk0-chat")
    result = run_sdk0(python0, site, key, "fake-cached", "fake-roundtrip")
    assert result["created"] == {
        "text": "Hello from fake", "usage": {"input_tokens": 4, "output_tokens": 3, "cache_read_input_tokens": 8}
    }  # fmt: skip
    assert result["streamed"]["text"] == "Hello from fake"  # type: ignore[index]
    assert result["streamed"]["usage"]["output_tokens"] == 3  # type: ignore[index]  # from message_delta
    assert result["tool"] == {"name": "get_weather", "input": {"city": "Paris"}, "stop_reason": "tool_use"}
    assert result["answered"] == "The tool said: sunny"
    assert isinstance(result["count"], int) and 0 < result["count"] < 30  # counted here, offline
    rows = site.usage("sdk0-chat")
    assert site.balance("sdk0-chat") == 10**9 - sum(r["cost"] for r in rows) == site.ledger_sum("sdk0-chat")
    assert [(r["model"], r["prompt_tokens"], r["cached_tokens"], r["completion_tokens"]) for r in rows] == [
        ("fake-cached", 12, 8, 3), ("fake-cached", 12, 8, 3), ("fake-roundtrip", 20, 0, 7), ("fake-roundtrip", 20, 0, 7)
    ]  # fmt: skip
    assert rows[0]["cost"] == cost_of(CHAT_PRICE, prompt=12, completion=3, cached=8) > 0
    assert rows[2]["cost"] == cost_of(CHAT_PRICE, prompt=20, completion=7)
