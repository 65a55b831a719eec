"""The database breaking under the gateway and the CLI: an unwritable file (chattr +i), a full disk (a
tiny tmpfs), a deleted `-wal`. Each is a 503 `database_unavailable` (logged once, with the reason),
`/readyz` says so, the CLI and `serve` say what to do in one line, and it all recovers once fixed.

These need root (chattr, mount); without it they are skipped and say why."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Gateway, config_text, serve_gateway
from tests.e2e.test_chat import MESSAGES
from tests.fakes.server import free_port
from tests.fakes.upstream import FakeUpstream
from tests.schemas import validate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses chattr and tmpfs")


def chattr(flag: str, *paths: Path) -> None:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot make files immutable here (chattr {flag}: {done.stderr.strip() or done.returncode})")


@contextmanager
def unwritable(database: Path) -> Iterator[None]:
    """The database file and its -wal immutable, as a read-only volume or a wrong owner would make them."""
    files = [p for p in (database, database.with_name(database.name + "-wal")) if p.exists()]
    chattr("+i", *files)
    try:
        yield
    finally:
        chattr("-i", *files)


@contextmanager
def tiny_disk(folder: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted at `folder` (root only)."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; removing it frees the disk again."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenbridge", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(s in done.stderr for s in says), done.stderr


def assert_database_unavailable(gateway: Gateway, secret: str, *, first: bool = False) -> None:
    """A 503. The first request after the break may have been admitted from memory (its key's chunk
    had room: purse.py), so only its settle finds the database broken: its answer is withheld
    (`billing_unavailable`, nothing charged). From then on admission itself answers database_unavailable."""
    with pytest.raises(openai.InternalServerError) as info:
        gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES)
    codes = ("database_unavailable", "billing_unavailable") if first else ("database_unavailable",)
    assert info.value.status_code == 503 and info.value.code in codes
    validate("ErrorResponse", info.value.response.json())
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 503, ready.text


def assert_serving(gateway: Gateway, secret: str, name: str) -> None:
    assert gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES).choices
    assert httpx.get(gateway.url + "/readyz").status_code == 200
    assert 0 <= gateway.balance(name) == gateway.ledger_sum(name)


def fault_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("tokenbridge") and "cannot take writes" in r.getMessage()]


def test_unwritable_database_answers_503_logged_once_and_recovers(
    upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenbridge")
    for gateway in serve_gateway(upstream, tmp_path_factory):
        secret = gateway.create_key("unwritable")
        assert_serving(gateway, secret, "unwritable")
        database = gateway.config.parent / "gateway.db"
        with unwritable(database):
            for attempt in range(3):
                assert_database_unavailable(gateway, secret, first=attempt == 0)
            [line] = fault_lines(caplog)  # once for the outage, not once per request, and no traceback
            assert line.exc_info is None and str(database) in line.getMessage()
            assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        assert_serving(gateway, secret, "unwritable")
        assert any("takes writes again" in r.getMessage() for r in caplog.records)


def test_full_disk_answers_503_and_recovers_once_space_is_freed(
    upstream: tuple[FakeUpstream, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        for gateway in serve_gateway(upstream, Reuse(disk)):  # type: ignore[arg-type]
            secret = gateway.create_key("full-disk")
            assert_serving(gateway, secret, "full-disk")
            filler = fill(disk)
            for attempt in range(3):
                assert_database_unavailable(gateway, secret, first=attempt == 0)
            assert len(fault_lines(caplog)) == 1
            filler.unlink()
            assert_serving(gateway, secret, "full-disk")


def test_serve_on_a_full_disk_exits_with_one_line_saying_what_to_do(
    upstream: tuple[FakeUpstream, str], tmp_path: Path
) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        config = disk / "config.toml"
        config.write_text(config_text(upstream[1]))
        assert cli(config, "keys", "create", "someone").returncode == 0  # the database exists, then the disk fills
        fill(disk)
        assert_one_line_error(cli(config, "serve", "--port", str(free_port())), "disk is full", "free")
        assert_one_line_error(cli(config, "credit", "someone", "1"), "disk is full", "free")


def test_cli_on_a_read_only_database_says_so_in_one_line(tmp_path: Path, upstream: tuple[FakeUpstream, str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text(upstream[1]))
    assert cli(config, "keys", "create", "someone", "--credit", "1").returncode == 0
    with unwritable(tmp_path / "gateway.db"):
        for args in (("keys", "create", "other"), ("credit", "someone", "1"), ("keys", "revoke", "someone")):
            assert_one_line_error(cli(config, *args), "gateway.db", "cannot take writes", "writable")
        listed = cli(config, "keys", "list")  # reading needs no write
        assert listed.returncode == 0 and "someone" in listed.stdout
    assert cli(config, "credit", "someone", "1").returncode == 0


def test_deleted_wal_makes_readyz_503_and_a_clean_stop_keeps_every_row(
    upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The running gateway keeps the rows it wrote after the -wal was deleted in that file's open
    descriptor; a clean stop checkpoints them into the database. Until then nothing else can open
    the database, so /readyz says so and the operator is told to stop the gateway cleanly."""
    for gateway in serve_gateway(upstream, tmp_path_factory):
        secret = gateway.create_key("wal")
        assert_serving(gateway, secret, "wal")
        wal = gateway.config.parent / "gateway.db-wal"
        wal.unlink()
        for _ in range(3):  # still served: the rows go to the deleted file this process still has open
            assert gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES).choices
        for _ in range(2):  # asked again after a request wrote: still one line in the log
            ready = httpx.get(gateway.url + "/readyz")
            assert ready.status_code == 503, ready.text
            assert gateway.client(secret).chat.completions.create(model="fake-ok", messages=MESSAGES).choices
        [line] = [r for r in caplog.records if "-wal" in r.getMessage()]
        assert "SIGTERM" in line.getMessage() and line.exc_info is None
        assert_one_line_error(cli(gateway.config, "keys", "list"), "gateway.db")  # blocked, not a traceback
    # The gateway stopped cleanly: its rows are in the database, and the next start works.
    assert len(gateway.usage("wal")) == 6 and 0 <= gateway.balance("wal") == gateway.ledger_sum("wal")
    for again in serve_gateway(upstream, Reuse(gateway.config.parent)):  # type: ignore[arg-type]
        assert_serving(again, secret, "wal")
        assert httpx.get(again.url + "/readyz").status_code == 200


class Reuse:
    """A tmp_path_factory stand-in for serve_gateway that hands out one folder (a disk, or an earlier run's)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def mktemp(self, name: str) -> Path:
        return self.folder
