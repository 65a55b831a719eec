"""`tokenbridge restore` where a restore goes wrong in practice: a new machine without the folder,
sudo on a service's file, a -wal left without its database, a Ctrl-C during the copy."""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import config_text
from tokenbridge import cli_ops
from tokenbridge.settings import load_settings
from tokenbridge.store.copies import check_database, copy_database
from tokenbridge.store.db import Database
from tokenbridge.store.keys import insert_key_with_account


async def a_backup(folder: Path, *, name: str = "k", credit: int = 10**9) -> Path:
    live = folder / f"{name}-live.db"
    async with await Database.open(live) as db:
        await insert_key_with_account(db, name=name, credit=credit)
    copy_database(live, folder / f"{name}-backup.db")
    return folder / f"{name}-backup.db"


def a_config(folder: Path, database: Path) -> Path:
    config = folder / "config.toml"
    text = config_text("http://127.0.0.1:9/v1")
    assert 'database = "gateway.db"' in text
    config.write_text(text.replace('database = "gateway.db"', f'database = "{database}"', 1))
    return config


def restore(config: Path, backup: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tokenbridge", "restore", str(backup), "--config", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def accounts(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM accounts")}


async def test_a_restore_onto_a_new_machine_makes_the_folder(tmp_path: Path) -> None:
    backup = await a_backup(tmp_path)
    database = tmp_path / "var" / "lib" / "tokenbridge" / "gateway.db"
    done = restore(a_config(tmp_path, database), backup)
    assert done.returncode == 0, done.stderr
    assert "there was no previous database" in done.stdout and check_database(database).ok
    assert "k" in accounts(database)


async def test_the_restored_file_keeps_the_permissions_of_the_one_it_replaces(tmp_path: Path) -> None:
    old = await a_backup(tmp_path, name="old")
    database = tmp_path / "gateway.db"
    os.replace(old, database)
    database.chmod(0o600)
    done = restore(a_config(tmp_path, database), await a_backup(tmp_path, name="new"))
    assert done.returncode == 0, done.stderr
    assert database.stat().st_mode & 0o777 == 0o600 and "new" in accounts(database)
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("gateway.db.before-restore-")]
    assert "old" in accounts(aside)


async def test_a_wal_left_without_its_database_is_moved_aside_not_replayed(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    stray = tmp_path / "gateway.db-wal"
    stray.write_bytes(b"frames of some other database" * 100)
    done = restore(a_config(tmp_path, database), await a_backup(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not stray.exists() and check_database(database).ok and "k" in accounts(database)
    assert [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("gateway.db.before-restore-")] == [
        b"frames of some other database" * 100
    ]


async def test_a_restore_interrupted_during_the_copy_leaves_the_database_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await a_backup(tmp_path, name="old")
    database = tmp_path / "gateway.db"
    os.replace(old, database)
    before = database.read_bytes()
    backup = await a_backup(tmp_path, name="new")
    settings = load_settings(a_config(tmp_path, database))

    def interrupted(source: Path, target: Path, *, replace: bool = False) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the backup is being copied

    monkeypatch.setattr(cli_ops, "copy_database", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli_ops.cmd_restore(settings, argparse.Namespace(path=str(backup), json=False))
    assert database.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".gateway", "gateway.db."))) == [
        "gateway.db.lock"
    ]
