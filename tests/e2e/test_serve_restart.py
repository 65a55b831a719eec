"""A restart with keys in the database (issue 11, item 19): the first start's secret is not shown
again, so the second start says how to make a new key if it was lost."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.test_first_run import SHIPPED_CONFIG, Served
from tests.fakes.server import free_port


def test_serve_restart_with_keys_says_how_to_make_a_new_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(SHIPPED_CONFIG, config)
    port = free_port()
    first = Served(config, port)
    try:
        first.until(r"Uvicorn running on")
    finally:
        first.stop()
    again = Served(config, port)
    try:
        hint = again.until(r"keys exist.*lost")[0]
        again.until(r"Uvicorn running on")
    finally:
        again.stop()
    line = next(line for line in again.seen if hint in line)
    assert "tokenbridge keys create NAME --credit USD" in line and str(config) in line
    assert not any("sk-tb-" in line for line in again.seen)
