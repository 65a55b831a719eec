"""GET /metrics on the real gateway: it parses, and a known sequence of requests moves it by exactly as much
as the usage rows say (tests/e2e/test_observe_serve.py runs the same sequence on `serve --workers 2`)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PRICE, FakeUpstream, Gateway
from tests.e2e.test_chat import MESSAGES
from tests.fakes.server import serve_in_thread
from tokenbridge.app import create_app
from tokenbridge.settings import load_settings

CHANNEL_SECRET = "sk-chan-SECRET-metrics-never-logged-77"
BROKEN_SECRET = "sk-broken-SECRET-metrics-never-logged-78"
ADMIN_TOKEN = "adm-SECRET-metrics-never-logged-79"
PRICES = "".join(f"{term} = {value}\n" for term, value in PRICE.items())
MODELS = ["fake-ok", "fake-cached", "fake-400", "failover", "tripped"]
CHAT = "/v1/chat/completions"

CONFIG = f"""
[server]
database = "metrics.db"
admin_token = "{ADMIN_TOKEN}"

[[channels]]
name = "broken"                    # answers 500: the first try for "failover", which then moves on
base_url = "http://HOST/v1"
api_key = "{BROKEN_SECRET}"
models = ["failover", "tripped"]
model_map = {{ "failover" = "fake-500", "tripped" = "fake-500" }}
priority = 10

[[channels]]
name = "fake"
base_url = "http://HOST/v1"
api_key = "{CHANNEL_SECRET}"
models = ["fake-ok", "fake-cached", "fake-400", "failover", "tripped"]
model_map = {{ "failover" = "fake-ok", "tripped" = "fake-ok" }}

""" + "".join(f'[models."{m}"]\n{PRICES}\n' for m in MODELS)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def config_for(upstream_url: str) -> str:
    return CONFIG.replace("HOST", upstream_url.removeprefix("http://"))


@contextmanager
def gateway_in(directory: Path, upstream: tuple[FakeUpstream, str]) -> Iterator[Gateway]:
    """The gateway on CONFIG, served in-process on loopback."""
    fake, url = upstream
    config = directory / "config.toml"
    config.write_text(config_for(url))
    with serve_in_thread(create_app(load_settings(config))) as gateway_url:
        yield Gateway(gateway_url, config, fake)


@pytest.fixture(scope="module")
def metered(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with gateway_in(tmp_path_factory.mktemp("metrics"), upstream) as gateway:
        yield gateway


def scrape(url: str, request_id: str | None = None) -> Samples:
    """Every sample of one scrape, parsed by prometheus-client's own parser (a fresh connection each time)."""
    headers = {"X-Request-ID": request_id} if request_id else {}
    answer = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a sample over every label set that has these labels."""
    wanted = set(labels.items())
    return sum(value for (n, have), value in samples.items() if n == name and wanted <= have)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def chat(url: str, secret: str, model: str, *, stream: bool = False, tag: str = "seq") -> tuple[str, int]:
    """One chat request on its own connection (so `--workers` may hand each to another worker)."""
    request_id = f"{tag}-{model}-{uuid.uuid4().hex[:12]}"
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": stream}
    headers = {"Authorization": f"Bearer {secret}", "X-Request-ID": request_id}
    with httpx.stream("POST", url + CHAT, json=body, headers=headers, timeout=30) as answer:
        answer.read()
    return request_id, answer.status_code


def known_sequence(url: str, secret: str) -> dict[str, int]:
    """3 JSON answers (one with cached tokens), 2 streams, 1 failover from a 500 channel, 1 upstream 400,
    1 wrong key. Returns each request id with the status it got."""
    asked = [("fake-ok", False), ("fake-ok", False), ("fake-cached", False), ("fake-ok", True), ("fake-ok", True)]
    asked += [("failover", False), ("fake-400", False)]
    statuses = dict(chat(url, secret, model, stream=stream) for model, stream in asked)
    statuses.update([chat(url, "sk-tb-" + "x" * 40, "fake-ok", tag="wrong-key")])
    return statuses


def check_sequence_counted(before: Samples, after: Samples, rows: list[dict[str, Any]]) -> None:
    """The counters moved by what known_sequence did; tokens and spend by the usage rows' sums."""
    requests = "tokenbridge_requests_total"
    done = {"route": CHAT, "channel": "fake", "end_reason": "done"}
    assert delta(before, after, requests, **done, model="fake-ok", status="200") == 4
    assert delta(before, after, requests, **done, model="fake-cached", status="200") == 1
    assert delta(before, after, requests, **done, model="failover", status="200") == 1
    assert delta(before, after, requests, **done, model="fake-400", status="400") == 1
    rejected = {"route": CHAT, "model": "fake-ok", "channel": "", "status": "401", "end_reason": "rejected"}
    assert delta(before, after, requests, **rejected) == 1
    assert delta(before, after, requests, route=CHAT) == 8

    assert len(rows) == 7  # the wrong key got no hold, so no row
    assert delta(before, after, "tokenbridge_failovers_total", model="failover") == 1
    assert delta(before, after, "tokenbridge_failovers_total") == sum(r["attempts"] - 1 for r in rows) == 1
    for kind in ("prompt", "completion", "cached"):
        counted = delta(before, after, "tokenbridge_tokens_total", kind=kind, usage_source="upstream")
        assert counted == sum(r[f"{kind}_tokens"] for r in rows) > 0
    assert delta(before, after, "tokenbridge_tokens_total", usage_source="estimated") == 0
    spent = delta(before, after, "tokenbridge_spend_nano_usd_total")
    assert spent == sum(r["cost"] for r in rows) > 0 and spent == int(spent)  # exact integer nano-USD

    for histogram in ("tokenbridge_upstream_latency_seconds", "tokenbridge_upstream_ttfb_seconds"):
        assert delta(before, after, histogram + "_count", channel="fake") == 7
        assert delta(before, after, histogram + "_bucket", channel="fake", model="fake-ok", le="+Inf") == 4
    circuits = {"channel": "broken", "model": "failover"}
    assert after[("tokenbridge_breaker_state", frozenset(circuits.items()))] == 0  # one failure: still closed
    assert after[("tokenbridge_breaker_state", frozenset({"channel": "fake", "model": "fake-ok"}.items()))] == 0
    assert after[("tokenbridge_open_holds", frozenset())] == 0


def test_metrics_move_by_exactly_what_a_known_sequence_did(metered: Gateway) -> None:
    secret = metered.create_key("metered", credit_usd="5")
    before = scrape(metered.url)
    statuses = known_sequence(metered.url, secret)
    assert sorted(statuses.values()) == [200] * 6 + [400, 401]
    assert metered.holds_returned() == 0  # the key's chunk went back once idle (purse.py)
    after = scrape(metered.url)
    check_sequence_counted(before, after, metered.usage("metered"))


def test_metrics_bound_labels_a_caller_chooses(metered: Gateway) -> None:
    secret = metered.create_key("labels")
    before = scrape(metered.url)
    _, status = chat(metered.url, secret, "no-such-model-" + uuid.uuid4().hex)
    assert status == 404
    assert httpx.get(metered.url + "/no/such/" + uuid.uuid4().hex).status_code == 404
    after = scrape(metered.url)
    requests = "tokenbridge_requests_total"
    assert delta(before, after, requests, route=CHAT, model="other", status="404", end_reason="rejected") == 1
    assert delta(before, after, requests, route="other", model="", status="404") == 1
    assert delta(before, after, requests, route="/metrics", status="200") == 1  # the first scrape, once it ended


def test_metrics_show_an_open_circuit(metered: Gateway) -> None:
    secret = metered.create_key("circuit", credit_usd="5")
    circuit = ("tokenbridge_breaker_state", frozenset({"channel": "broken", "model": "tripped"}.items()))
    assert scrape(metered.url)[circuit] == 0
    for _ in range(3):  # breaker_failures = 3 by default: the third failure in a row opens it
        assert chat(metered.url, secret, "tripped")[1] == 200  # each still answered by the good channel
    assert scrape(metered.url)[circuit] == 2


def test_the_cli_leaves_prometheus_client_unimported_until_serve_has_set_its_directory() -> None:
    # prometheus-client reads PROMETHEUS_MULTIPROC_DIR once, at import: serve sets it first (serve.run).
    check = "import sys, tokenbridge.cli, tokenbridge.serve; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


class Circuits:
    """Breakers as render() reads them: every circuit open."""

    def state(self, channel: str, model: str) -> str:
        return "open"


def breaker_series(text: bytes) -> set[tuple[str, str]]:
    return {
        (sample.labels["channel"], sample.labels["model"])
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "tokenbridge_breaker_state"
    }


def test_a_circuit_a_reload_stopped_serving_leaves_the_breaker_gauge(tmp_path: Path) -> None:
    from tokenbridge.metrics import Metrics

    before, after = tmp_path / "before.toml", tmp_path / "after.toml"
    before.write_text(config_for("http://127.0.0.1:9"))
    after.write_text(config_for("http://127.0.0.1:9").replace('name = "broken"', 'name = "renamed"'))
    metrics = Metrics()
    shown = metrics.render(settings=load_settings(before), breakers=Circuits(), open_holds=0)  # type: ignore[arg-type]
    assert ("broken", "failover") in breaker_series(shown)
    shown = metrics.render(settings=load_settings(after), breakers=Circuits(), open_holds=0)  # type: ignore[arg-type]
    assert ("renamed", "failover") in breaker_series(shown)
    assert not any(channel == "broken" for channel, _ in breaker_series(shown))


DYING_WORKER = """
import os
from prometheus_client import Gauge
Gauge("tokenbridge_breaker_state", "x", ["channel", "model"], multiprocess_mode="livemax").labels("c", "m").set(2)
os._exit(0)  # killed, as far as its files know: no mark_process_dead
"""


def test_a_worker_that_died_without_shutdown_leaves_no_live_gauge(tmp_path: Path) -> None:
    import os

    from tokenbridge.metrics import forget_dead_workers

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    dead = subprocess.run([sys.executable, "-c", DYING_WORKER], env=env, timeout=60, check=True)
    assert dead.returncode == 0
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith("gauge_livemax_")]
    assert len(left) == 1, left
    alive = tmp_path / f"gauge_livemax_{os.getpid()}.db"
    alive.write_bytes(b"")  # a live worker's file (this process) must stay
    forget_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gauge_live")) == [alive.name]
