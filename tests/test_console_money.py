"""The console's money formats (tokenbridge/console/core.js), run in Node: exact nano-USD to the
server's exact text, and the rounded text shown to the eye. Skips without Node, saying so."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tokenbridge.money import format_usd

CORE = Path(__file__).parent.parent / "tokenbridge" / "console" / "core.js"
CASES = [0, 1, 499, 500, 21_000, 9_999_999, 10_000_000, 49_979_000, 1_000_000_000, 1_234_567_890_123, -2_500_000_000]


def run_node(tmp_path: Path, expression: str) -> object:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the console's formats are checked in Node")
    module = tmp_path / "core.mjs"  # .mjs: an ES module whatever Node's version
    module.write_bytes(CORE.read_bytes())
    script = f"import * as core from {json.dumps(module.as_uri())}; console.log(JSON.stringify({expression}));"
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_exact_text_is_the_servers(tmp_path: Path) -> None:
    shown = run_node(tmp_path, f"{CASES}.map((n) => core.nanoToUsd(BigInt(n)))")
    assert shown == [format_usd(n) for n in CASES]


def test_money_for_the_eye_rounds_to_cents_a_dollar_up_and_says_when_tiny(tmp_path: Path) -> None:
    shown = run_node(tmp_path, f"{CASES}.map((n) => core.money(n))")
    assert shown == [
        "$0.00", "<$0.000001", "<$0.000001", "$0.000001", "$0.000021", "$0.01", "$0.01", "$0.05", "$1.00",
        "$1,234.57", "-$2.50",
    ]  # fmt: skip
