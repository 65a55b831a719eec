"""The upstream-client choice, measured: httpx, httpx2 and aiohttp as the gateway's upstream leg uses
one (a single pooled client per process, 50 requests in flight, each body read to its end), against
bench/upstream.py on loopback, JSON and SSE.

    python bench/clients.py [--seconds 5] [--concurrency 50]

A client that is not installed is reported as such (aiohttp is a dependency, httpx comes with the
test extras, `pip install -e '.[test]'`; `pip install httpx2` to include it). Each client runs in a
process of its own, so one's pool or event loop cannot slow the next; CPU is that process's user +
system time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHAT = b'{"model":"bench","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
STREAM = b'{"model":"bench","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true}'
CLIENTS = ("aiohttp", "httpx", "httpx2")


async def drive(client: str, url: str, body: bytes, seconds: float, concurrency: int) -> int:
    """Requests completed by `concurrency` workers sharing one client for `seconds`."""
    deadline = time.monotonic() + seconds
    done = 0
    headers = {"Content-Type": "application/json"}

    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    async with session.post(url, data=body, headers=headers) as response:
                        async for _ in response.content.iter_any():
                            pass
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done

    module: Any = __import__(client)  # httpx or httpx2: the same AsyncClient interface
    limits = module.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with module.AsyncClient(limits=limits, timeout=30) as http:

        async def httpx_worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with http.stream("POST", url, content=body, headers=headers) as response:
                    async for _ in response.aiter_raw():
                        pass
                done += 1

        await asyncio.gather(*(httpx_worker() for _ in range(concurrency)))
    return done


def one(client: str, url: str, kind: str, seconds: float, concurrency: int) -> None:
    """Child process: print `requests cpu_seconds` for one client and one kind of answer."""
    body = STREAM if kind == "stream" else CHAT
    asyncio.run(drive(client, url, body, 0.5, concurrency))  # warm the pool
    cpu0 = time.process_time()
    done = asyncio.run(drive(client, url, body, seconds, concurrency))
    print(done, time.process_time() - cpu0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--one", nargs=3, metavar=("CLIENT", "URL", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(*args.one, args.seconds, args.concurrency)
        return 0
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), str(port)])
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        print(f"\nupstream clients, {args.concurrency} in flight, {args.seconds:g}s each, loopback\n")
        print("| client | JSON req/s | JSON CPU ms/req | SSE req/s | SSE CPU ms/req |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for client in CLIENTS:
            if importlib.util.find_spec(client) is None:
                print(f"| {client} | not installed | | | |")
                continue
            cells = []
            for kind in ("json", "stream"):
                out = subprocess.run(
                    [sys.executable, __file__, "--seconds", str(args.seconds), "--concurrency",
                     str(args.concurrency), "--one", client, url, kind],
                    capture_output=True, text=True, check=True,
                ).stdout.split()  # fmt: skip
                done, cpu = int(out[0]), float(out[1])
                cells += [f"{done / args.seconds:,.0f}", f"{1000 * cpu / max(done, 1):.3f}"]
            print(f"| {client} | " + " | ".join(cells) + " |")
    finally:
        upstream.terminate()
        upstream.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
