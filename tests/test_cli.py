"""The CLI as a user runs it (a real subprocess), against a real gateway sharing its database."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.e2e.test_chat import expected_cost

MESSAGES = [{"role": "user", "content": "hi"}]


def test_keys_create_prints_secret_alone_on_last_line(gateway: Gateway) -> None:
    result = gateway.cli("keys", "create", "cli-text", "--credit", "2.5")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk-tb-") and len(secret) == 46 and secret[6:].isalnum()
    assert gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES).choices


def test_keys_create_json_gives_key_and_list_never_shows_it(gateway: Gateway) -> None:
    created = orjson.loads(
        gateway.cli(
            "keys", "create", "cli-json", "--credit", "1", "--json", "--models", "echo-1,fake-ok", "--rpm", "5"
        ).stdout
    )
    assert created["key"].startswith("sk-tb-") and created["balance_usd"] == "1.00"
    listing = gateway.cli("keys", "list", "--json")
    [row] = [k for k in orjson.loads(listing.stdout) if k["name"] == "cli-json"]
    assert row["prefix"] == created["key"][:12] and row["models"] == ["echo-1", "fake-ok"] and row["rpm"] == 5
    assert created["key"] not in listing.stdout
    assert created["key"] not in gateway.cli("keys", "list").stdout


def test_keys_create_applies_the_admin_api_rules_with_a_clean_error(gateway: Gateway) -> None:
    # "team/alice" could be made here and then never addressed by /api/keys/{name}; an rpm of 2**63 or an
    # expiry after the year 9999 broke the store or /v1/dashboard/billing/subscription.
    for args, says in [
        (("team/alice",), "letters, digits"),
        (("=HYPERLINK(1)",), "letters, digits"),
        (("cli-rpm", "--rpm", str(2**63)), "--rpm"),
        (("cli-tpm", "--tpm", "0"), "--tpm"),
        (("cli-far", "--expires-in", "9999999999d"), "--expires-in"),
        (("cli-far", "--expires-in", "9" * 400 + "d"), "--expires-in"),
        (("cli-amount", "--credit", "5_000"), "amount"),
    ]:
        result = gateway.cli("keys", "create", *args)
        assert result.returncode == 2 and says in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr) < 400, result.stderr
    names = [k["name"] for k in orjson.loads(gateway.cli("keys", "list", "--json").stdout)]
    assert not {"team/alice", "=HYPERLINK(1)", "cli-rpm", "cli-tpm", "cli-far", "cli-amount"} & set(names)
    assert gateway.cli("keys", "create", "cli-edge", "--rpm", str(10**9), "--expires-in", "30d").returncode == 0


def test_credit_on_a_running_server_lets_a_broke_key_through(gateway: Gateway) -> None:
    secret = gateway.create_key("cli-broke", credit_usd="0")
    client = gateway.client(secret)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    assert info.value.code == "insufficient_quota"
    result = gateway.cli("credit", "cli-broke", "0.25", "--note", "test top-up", "--json")
    assert orjson.loads(result.stdout)["balance_usd"] == "0.25"
    assert client.chat.completions.create(model="fake-ok", messages=MESSAGES).choices
    assert gateway.balance("cli-broke") == gateway.ledger_sum("cli-broke") == 250_000_000 - expected_cost(12, 3)


def test_credit_negative_is_a_correction_and_unknown_name_says_what_to_do(gateway: Gateway) -> None:
    gateway.create_key("cli-correct", credit_usd="1")
    assert gateway.cli("credit", "cli-correct", "-0.4").returncode == 0
    assert gateway.balance("cli-correct") == gateway.ledger_sum("cli-correct") == 600_000_000
    missing = gateway.cli("credit", "nobody-here", "1")
    assert missing.returncode == 2 and "accounts list" in missing.stderr


def test_usage_json_shows_one_row_per_request(gateway: Gateway) -> None:
    secret = gateway.create_key("cli-usage", credit_usd="1")
    client = gateway.client(secret)
    ids = [
        client.chat.completions.with_raw_response.create(model=m, messages=MESSAGES).headers["x-request-id"]
        for m in ("fake-ok", "fake-cached", "echo-1")
    ]
    rows = orjson.loads(gateway.cli("usage", "--key", "cli-usage", "--json").stdout)
    assert [r["request_id"] for r in rows] == ids
    assert [r["channel"] for r in rows] == ["fake", "fake", "demo"]
    assert [r["cost_nano_usd"] for r in rows[:2]] == [expected_cost(12, 3), expected_cost(12, 3, cached=8)]
    assert rows[1]["cached_tokens"] == 8 and rows[0]["prompt_tokens"] == 12 and rows[0]["completion_tokens"] == 3
    by_model = orjson.loads(gateway.cli("usage", "--key", "cli-usage", "--by", "model", "--json").stdout)
    assert {r["model"]: r["requests"] for r in by_model} == {"echo-1": 1, "fake-cached": 1, "fake-ok": 1}
    table = list(csv.DictReader(io.StringIO(gateway.cli("usage", "--key", "cli-usage", "--csv").stdout)))
    assert [r["request_id"] for r in table] == ids


def test_config_check_on_bad_file_names_the_key(gateway: Gateway) -> None:
    bad = gateway.config.parent / "bad.toml"
    bad.write_text(gateway.config.read_text().replace("[server]", "[server]\nprot = 1"))
    result = gateway.cli("config", "check")
    assert result.returncode == 0 and "fake" in result.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "tokenbridge", "config", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "server.prot" in refused.stderr and "port" in refused.stderr
