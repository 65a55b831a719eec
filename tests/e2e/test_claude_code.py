"""Claude Code, the real CLI, through the gateway to an openai-kind channel of the fake upstream.

`npm install @anthropic-ai/claude-code` (a native binary in the package) goes into a cache dir
outside the repo (CLAUDE_CODE_DIR), once. It runs offline in print mode with an empty HOME, its
key as ANTHROPIC_API_KEY (sent as x-api-key) or ANTHROPIC_AUTH_TOKEN (sent as Bearer): a plain
answer, and a Bash tool round trip (the fake asks for `echo tokenbridge-bash-ok` and answers with
what the tool printed). Without npm this skips, saying why; TOKENBRIDGE_REQUIRE_CLAUDE_CODE=1
(set by .ci/run) turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Gateway
from tests.e2e.messages_config import CHAT_PRICE, cost_of, serve_messages_gateway
from tests.fakes import roundtrip
from tests.fakes.upstream import TEXT, FakeUpstream

CLAUDE_CODE_VERSION = os.environ.get(
    "TOKENBRIDGE_CLAUDE_CODE_VERSION", "2.1.197"
)  # the one these tests were written on
CLAUDE_CODE_DIR = Path.home() / ".cache" / "tokenbridge-tests" / f"claude-code-{CLAUDE_CODE_VERSION}"
RUN_TIMEOUT_S = 180  # a guard against a hang, not a synchronisation: each run ends on its own


def claude_binary() -> Path:
    """The CLI, installed on first use; skips (or, in CI, fails) where it cannot be."""
    binary = CLAUDE_CODE_DIR / "node_modules" / ".bin" / "claude"
    if binary.exists():
        return binary
    problem = None
    npm = shutil.which("npm")
    if npm is None:
        problem = "npm is not installed (Debian: apt-get install npm), so Claude Code cannot be installed"
    else:
        CLAUDE_CODE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(CLAUDE_CODE_DIR), "--no-audit", "--no-fund", "--loglevel=error",
             f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0 or not binary.exists():
            problem = f"npm install @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION} failed: {done.stderr[-500:]}"
    if problem is not None:
        if os.environ.get("TOKENBRIDGE_REQUIRE_CLAUDE_CODE") == "1":
            pytest.fail(f"TOKENBRIDGE_REQUIRE_CLAUDE_CODE=1 but {problem}")
        pytest.skip(problem)
    return binary


@pytest.fixture(scope="module")
def claude() -> Path:
    return claude_binary()


@pytest.fixture(scope="module")
def site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_messages_gateway(upstream, tmp_path_factory)


def run_claude(claude: Path, site: Gateway, tmp: Path, credential: str, key: str, *args: str) -> dict[str, Any]:
    home = tmp / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": site.url,
        credential: key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
    }
    done = subprocess.run(
        [str(claude), "-p", *args, "--output-format", "json"],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, f"claude exited {done.returncode}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    result: dict[str, Any] = orjson.loads(done.stdout)
    assert result["type"] == "result" and result["is_error"] is False, result
    return result


def billed_rows(site: Gateway, name: str) -> list[dict[str, Any]]:
    rows = site.usage(name)
    assert site.balance(name) == 10**9 - sum(r["cost"] for r in rows) == site.ledger_sum(name)
    return rows


@pytest.mark.parametrize("credential", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_claude_code_gets_a_plain_answer_from_a_chat_provider(
    claude: Path, site: Gateway, tmp_path: Path, credential: str
) -> None:
    name = f"cc-plain-{credential}"
    result = run_claude(claude, site, tmp_path, credential, site.create_key(name), "Say hello", "--model", "fake-ok")
    assert result["result"] == TEXT
    sent = [s for s in site.fake.requests_for("fake-ok") if "Say hello" in str(s.body["messages"])][-1]
    assert sent.path == "/v1/chat/completions" and sent.body["stream"] is True  # Claude Code always streams
    # It sends a `role: "system"` turn inside `messages` (its agent list): mapped to a chat system message.
    assert [m["role"] for m in sent.body["messages"]][0] == "system"
    [row] = billed_rows(site, name)
    assert (row["route"], row["status"], row["end_reason"], row["usage_source"]) == (
        "messages",
        200,
        "done",
        "upstream",
    )
    assert row["cost"] == cost_of(CHAT_PRICE, prompt=12, completion=3)


@pytest.mark.parametrize("credential", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
def test_claude_code_runs_a_bash_tool_round_trip_through_a_chat_provider(
    claude: Path, site: Gateway, tmp_path: Path, credential: str
) -> None:
    name = f"cc-bash-{credential}"
    key = site.create_key(name)
    args = ("Run the marker command", "--model", "fake-roundtrip", "--allowedTools", "Bash")
    result = run_claude(claude, site, tmp_path, credential, key, *args)
    assert result["result"] == "The tool said: tokenbridge-bash-ok" and result["num_turns"] == 2
    asked, answered = site.fake.requests_for("fake-roundtrip")[-2:]
    assert "Bash" in [t["function"]["name"] for t in asked.body["tools"]]
    call = answered.body["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "Bash" and orjson.loads(call["function"]["arguments"]) == roundtrip.BASH_INPUT
    tool = answered.body["messages"][-1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == call["id"] and "tokenbridge-bash-ok" in tool["content"]
    rows = billed_rows(site, name)
    assert [(r["prompt_tokens"], r["completion_tokens"], r["end_reason"]) for r in rows] == [(20, 7, "done")] * 2
    assert {r["cost"] for r in rows} == {cost_of(CHAT_PRICE, prompt=20, completion=7)}
