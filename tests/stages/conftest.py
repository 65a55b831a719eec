"""Fixtures of the stage tests: the kit's small config in a temp dir, and the real store it names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.stages.kit import open_store, write_settings
from tokenbridge.settings import Settings
from tokenbridge.store.db import Database


@pytest.fixture
def stage_settings(tmp_path: Path) -> Settings:
    return write_settings(tmp_path)


@pytest.fixture
async def db(stage_settings: Settings) -> AsyncIterator[Database]:
    async with open_store(stage_settings) as store:
        yield store
