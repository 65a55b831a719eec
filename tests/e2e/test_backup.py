"""`tokenbridge backup` of a live `tokenbridge serve` under concurrent SDK load (another process, WAL),
then `tokenbridge restore` of that copy and a new `serve` on it: the old keys work."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import Gateway, config_text
from tests.e2e.load import Load, answers_once_more, assert_every_answer_booked, money_of, serving
from tests.e2e.test_first_run import Served
from tests.fakes.upstream import FakeUpstream


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tokenbridge", *args, "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def served(upstream: tuple[FakeUpstream, str], tmp_path: Path) -> Iterator[tuple[Served, Gateway]]:
    fake, url = upstream
    config = tmp_path / "config.toml"
    config.write_text(config_text(url))
    with serving(config) as (running, base_url):
        yield running, Gateway(base_url.removesuffix("/v1"), config, fake)


def test_backup_under_load_is_consistent_and_restore_brings_the_keys_back(
    served: tuple[Served, Gateway], tmp_path: Path
) -> None:
    running, gateway = served
    secret = gateway.create_key("backed-up", credit_usd="1000")
    load = Load(gateway.url + "/v1", secret, threads=6)
    try:
        load.wait_for(30)  # the load is under way...
        before = len(load.answers)
        backup = cli(gateway.config, "backup", str(tmp_path / "copy.db"), "--json")
        load.wait_for(before + 30)  # ...and went on while the copy was taken (the load never waits for it)
    finally:
        answers = load.stop()
    assert backup.returncode == 0, backup.stderr
    said = orjson.loads(backup.stdout)
    assert said["integrity_check"] == "ok" and said["balances_match_ledger"] is True and said["accounts"] >= 2
    assert not load.failures, load.failures[:3]

    copy = tmp_path / "copy.db"
    with sqlite3.connect(copy) as conn:  # checked again here, by sqlite3 itself, not by tokenbridge
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    wallets, rows = money_of(copy)
    assert all(balance == ledger for balance, ledger in wallets.values()), wallets
    assert 0 < len(rows) < len(answers)  # a snapshot taken mid-load: some answers came after it
    assert_every_answer_booked(gateway.config.parent / "gateway.db", answers)  # the live file has them all

    refused = cli(gateway.config, "restore", str(copy))
    assert refused.returncode == 2 and "stop it first" in refused.stderr, refused.stderr
    running.stop()

    restored = cli(gateway.config, "restore", str(copy))
    assert restored.returncode == 0, restored.stderr
    assert "integrity_check ok" in restored.stdout and "previous database is kept at" in restored.stdout
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("gateway.db.before-restore-")]
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))], "the old file was not kept"
    assert money_of(gateway.config.parent / "gateway.db") == (wallets, rows)

    answers_once_more(gateway.config, secret)
    after, _ = money_of(gateway.config.parent / "gateway.db")
    assert after["backed-up"][0] == after["backed-up"][1] < wallets["backed-up"][0]  # one more charge, booked


def test_backup_and_restore_refuse_with_what_to_do_next(gateway: Gateway, tmp_path: Path) -> None:
    target = tmp_path / "taken.db"
    target.write_bytes(b"someone's file")
    refused = gateway.cli("backup", str(target))
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert target.read_bytes() == b"someone's file"
    forced = gateway.cli("backup", str(target), "--force")
    assert forced.returncode == 0 and "integrity_check ok" in forced.stdout, forced.stderr
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    nowhere = gateway.cli("backup", str(tmp_path / "no" / "such" / "folder.db"))
    assert nowhere.returncode == 2 and "does not exist; create it" in nowhere.stderr, nowhere.stderr
    folder = gateway.cli("backup", str(tmp_path))
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    live = gateway.cli("backup", str(gateway.config.parent / "gateway.db"), "--force")
    assert live.returncode == 2 and "live database itself" in live.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    bad = gateway.cli("restore", str(junk))
    assert bad.returncode == 2 and "not a readable tokenbridge database" in bad.stderr, bad.stderr
    assert "nothing was changed" in bad.stderr and "Traceback" not in bad.stderr
    missing = gateway.cli("restore", str(tmp_path / "nowhere.db"))
    assert missing.returncode == 2 and "no backup at" in missing.stderr and "Traceback" not in missing.stderr
