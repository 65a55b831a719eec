"""The baseline: a bare raw-ASGI passthrough on aiohttp, with no auth, no billing, no stages.
What the gateway costs is measured against this and against the upstream direct.

    uvicorn --factory bench.passthrough:make --port PORT   (UPSTREAM=http://127.0.0.1:PORT/v1)
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp


def make() -> Any:
    upstream = os.environ["UPSTREAM"] + "/chat/completions"
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000), auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            assert session is not None
            await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert session is not None
        async with session.post(upstream, data=body, headers={"Content-Type": "application/json"}) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(b"content-type", response.headers["Content-Type"].encode())],
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app
