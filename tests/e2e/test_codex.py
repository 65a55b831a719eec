"""Codex CLI (the real one, from npm) against the gateway over a chat-only channel: `codex exec --json`
to the end, a plain answer and an `exec_command` round trip, billed.

Codex is installed with npm into a cache outside the repo (CODEX_DIR) the first time; without npm
the tests are skipped and say why, unless TOKENBRIDGE_REQUIRE_CODEX=1 (set by `.ci/run`) makes
that a failure. The package carries its native binary: nothing is downloaded past npm, and it runs
offline against the gateway on loopback.
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

from tests.conftest import Gateway, serve_gateway
from tests.e2e.test_chat import expected_cost
from tests.fakes.responses import CODEX_COMMAND, TEXT, TOOL_DONE
from tests.fakes.upstream import FakeUpstream

CODEX_DIR = Path(os.environ.get("TOKENBRIDGE_TEST_CACHE", Path.home() / ".cache" / "tokenbridge-tests")) / "codex"
CODEX = CODEX_DIR / "node_modules" / ".bin" / "codex"
MODEL = "fake-tools"  # a chat-only channel of the fake upstream (tests/fakes/responses.py)


def codex_binary() -> Path:
    """Codex, installed into the cache if it is not there yet; a skip (or, in CI, a failure) without npm."""
    if CODEX.exists():
        return CODEX
    npm = shutil.which("npm")
    if npm is None:
        reason = "npm is not installed: Codex CLI comes from npm (`apt-get install npm`)"
        if os.environ.get("TOKENBRIDGE_REQUIRE_CODEX") == "1":
            pytest.fail(f"{reason}; TOKENBRIDGE_REQUIRE_CODEX=1 says it must run")
        pytest.skip(reason)
    CODEX_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "@openai/codex"], cwd=CODEX_DIR,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0 and CODEX.exists(), done.stderr[-2000:]
    return CODEX


@pytest.fixture(scope="module")
def codex_gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_gateway(upstream, tmp_path_factory, max_body_bytes=1 << 20)  # Codex sends ~40 KB a turn


def run_codex(gateway: Gateway, key: str, prompt: str, home: Path) -> list[dict[str, Any]]:
    """`codex exec --json` to its end; its JSON lines."""
    codex = codex_binary()
    (home / "codex").mkdir(parents=True)
    (home / "work").mkdir()
    (home / "codex" / "config.toml").write_text(
        f'model = "{MODEL}"\nmodel_provider = "tokenbridge"\n\n[model_providers.tokenbridge]\nname = "Token Bridge"\n'
        f'base_url = "{gateway.url}/v1"\nenv_key = "TOKENBRIDGE_KEY"\nwire_api = "responses"\n'
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / "codex"), "TOKENBRIDGE_KEY": key}
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--json", prompt],
        cwd=home / "work", env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def messages(lines: list[dict[str, Any]]) -> list[str]:
    return [e["item"]["text"] for e in lines if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"]


def billed(gateway: Gateway, name: str, turns: int) -> None:
    rows = gateway.usage(name)
    assert [(r["route"], r["channel"], r["usage_source"], r["end_reason"]) for r in rows] == [
        ("responses", "fake", "upstream", "done")
    ] * turns
    assert [r["cost"] for r in rows] == [expected_cost(12, 3)] * turns
    assert gateway.balance(name) == gateway.ledger_sum(name) == 10**9 - turns * expected_cost(12, 3)


def test_codex_exec_gets_a_plain_answer_through_chat(codex_gateway: Gateway, tmp_path: Path) -> None:
    lines = run_codex(codex_gateway, codex_gateway.create_key("codex-plain"), "say hi", tmp_path)
    assert messages(lines) == [TEXT]
    assert lines[-1]["type"] == "turn.completed" and lines[-1]["usage"]["input_tokens"] == 12
    chat = codex_gateway.fake.requests_for(MODEL)[-1]
    assert chat.path == "/v1/chat/completions"
    roles = [m["role"] for m in chat.body["messages"]]
    assert roles[0] == "system" and "developer" not in roles and roles[-1] == "user"  # developer -> system
    names = [t["function"]["name"] for t in chat.body["tools"]]
    assert "exec_command" in names and any("__" in n for n in names)  # namespace tools flattened
    assert all(t["type"] == "function" for t in chat.body["tools"])  # web_search dropped
    billed(codex_gateway, "codex-plain", 1)


def test_codex_exec_runs_the_exec_command_the_fake_asks_for_and_answers_its_output(
    codex_gateway: Gateway, tmp_path: Path
) -> None:
    lines = run_codex(codex_gateway, codex_gateway.create_key("codex-tool"), "use a tool to run echo", tmp_path)
    ran = [e["item"] for e in lines if e["type"] == "item.completed" and e["item"]["type"] == "command_execution"]
    assert len(ran) == 1 and ran[0]["exit_code"] == 0 and CODEX_COMMAND in ran[0]["command"]
    marker = CODEX_COMMAND.removeprefix("echo ")
    assert marker in ran[0]["aggregated_output"]
    [answer] = messages(lines)
    assert answer.startswith(TOOL_DONE) and marker in answer
    second = codex_gateway.fake.requests_for(MODEL)[-1].body["messages"]
    [call] = [m for m in second if m["role"] == "assistant" and m.get("tool_calls")]
    assert call["tool_calls"][0]["function"]["name"] == "exec_command"
    [output] = [m for m in second if m["role"] == "tool"]
    assert output["tool_call_id"] == call["tool_calls"][0]["id"] and marker in output["content"]
    billed(codex_gateway, "codex-tool", 2)
