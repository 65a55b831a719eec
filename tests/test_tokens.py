"""Offline token counts: the shipped BPE files load with the network cut off."""

from __future__ import annotations

import os
import subprocess
import sys

from tokenbridge import tokens

NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise SystemExit(f"network call: {args!r}")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
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
    tokens.encoding.cache_clear()
    tokens.encoding("cl100k_base")
    assert os.environ.get("TIKTOKEN_CACHE_DIR") == before
