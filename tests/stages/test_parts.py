"""Each stage is built with the parts of the runtime it uses (app.py's OPENAI_STAGES passes them), not
the whole Runtime: what a stage can touch is in its constructor's signature."""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any

import orjson

from tests.echo_config import echo_settings
from tokenbridge.call import Call
from tokenbridge.stages.auth import AuthMiddleware
from tokenbridge.stages.mapping import MappingMiddleware
from tokenbridge.store.db import Database
from tokenbridge.store.keys import KeyCache, insert_key_with_account
from tokenbridge.upstream.breaker import Breakers

PACKAGE = Path(__file__).parents[2] / "tokenbridge"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_stage_and_not_the_proxy_imports_the_runtime() -> None:
    modules = [*sorted((PACKAGE / "stages").glob("*.py")), PACKAGE / "upstream" / "proxy.py"]
    assert [p.name for p in modules if "tokenbridge.runtime" in imported_modules(p)] == []


def new_call(tmp_path: Path) -> Call:
    settings = echo_settings("a", "b", directory=tmp_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    call = Call(request_id="req-parts", settings=settings)
    call.body, call.raw_body, call.model = body, orjson.dumps(body), "m"
    return call


async def reached(stage: Any, call: Call, headers: list[tuple[bytes, bytes]] | None = None) -> bool:
    """Run `stage` (built around an inner app that only notes it was reached) on `call`."""
    seen: list[bool] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(True)

    scope: Any = {"type": "http", "tokenbridge.call": call, "headers": headers or []}
    await stage(inner)(scope, None, None)  # neither stage here reads the body or answers
    return seen == [True]


async def test_mapping_is_built_with_an_rng_and_the_breakers(tmp_path: Path) -> None:
    call = new_call(tmp_path)
    breakers = Breakers(call.settings.server.breaker, on_change=lambda change: None)
    assert await reached(lambda app: MappingMiddleware(app, rng=random.Random(3), breakers=breakers), call)
    assert sorted(c.name for c in call.candidates) == ["a", "b"]


async def test_auth_is_built_with_the_key_cache_and_the_database(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "t.db") as db:
        key, secret = await insert_key_with_account(db, name="k", credit=10**9)
        call = new_call(tmp_path)
        headers = [(b"authorization", f"Bearer {secret}".encode())]
        assert await reached(lambda app: AuthMiddleware(app, keys=KeyCache(), db=lambda: db), call, headers)
    assert call.key is not None and call.key.id == key.id
