"""Prometheus metrics: what every finished request adds, and the text `GET /metrics` serves (endpoints.py).

One `Metrics` per process (on the Runtime). Requests feed it in one place, `observe.py`, from the
finished Call; breaker transitions feed the breaker gauge; open holds are counted in the store at
scrape time, so every worker reports the same figure.

With `tokenbridge serve --workers N` each worker is its own process with its own counters, and a
scrape reaches just one of them. So `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before the workers start: prometheus-client then keeps every value in a per-process file there, and
a scrape sums the files of all workers (prometheus-client's multiprocess mode). Without that
variable (one process, or tests that build the app in-process) values live in memory, in a registry
of this object's own: two apps in one process never share a counter.

Per request the cost is a few dict look-ups and increments: labelled children are cached here by
their label tuple (prometheus-client's `labels()` takes a lock and validates on every call), and
label values are bounded (a model the config does not serve is "other"), so a caller cannot grow
the cache or the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from tokenbridge.circuits import CLOSED, HALF_OPEN, OPEN

if TYPE_CHECKING:
    from tokenbridge.call import Call
    from tokenbridge.settings import Settings
    from tokenbridge.upstream.breaker import Breakers

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What generate_latest writes (the classic text format); newer clients' CONTENT_TYPE_LATEST names 1.0.0.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BREAKER_STATES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
OTHER = "other"  # the label of a model the config does not serve
# Seconds. A stream's whole duration can run to minutes, so the top buckets are wide.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFB_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

M = TypeVar("M", Counter, Gauge, Histogram)


class Children(Generic[M]):
    """A metric's labelled children, made once per label tuple and kept."""

    __slots__ = ("cache", "metric")

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self.cache: dict[tuple[object, ...], M] = {}

    def get(self, *labels: object) -> M:
        child = self.cache.get(labels)
        if child is None:
            child = self.cache[labels] = self.metric.labels(*(str(label) for label in labels))
        return child


class OpenHolds(Collector):
    """`tokenbridge_open_holds`, set from the store just before each scrape."""

    def __init__(self) -> None:
        self.value = 0

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "tokenbridge_open_holds",
            "Open holds in the store (all workers): requests' own, and chunks (store/chunks.py).",
            self.value,
        )


class Transactions(Collector):
    """`tokenbridge_sqlite_transactions_total`: this process's committed write transactions, read at each scrape."""

    def __init__(self) -> None:
        self.value = 0

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "tokenbridge_sqlite_transactions", "SQLite write transactions committed by this process.", self.value
        )


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode values go to files and a scrape reads them all, so nothing registers here.
        self.registry: CollectorRegistry | None = None if self.multiprocess else CollectorRegistry()
        self.holds = OpenHolds()
        self.transactions = Transactions()
        reg = self.registry
        self.requests = Children(
            Counter(
                "tokenbridge_requests", "HTTP requests, by how they ended.",
                ["route", "model", "channel", "status", "end_reason"], registry=reg,
            )
        )  # fmt: skip
        self.tokens = Children(
            Counter(
                "tokenbridge_tokens", "Tokens billed (cached is a part of prompt).",
                ["model", "kind", "usage_source"], registry=reg,
            )
        )  # fmt: skip
        self.spend = Children(
            Counter("tokenbridge_spend_nano_usd", "Charged to keys, in nano-USD (1e-9 USD).", ["model"], registry=reg)
        )
        self.failovers = Children(
            Counter("tokenbridge_failovers", "Upstream attempts beyond the first.", ["model"], registry=reg)
        )
        self.latency = Children(
            Histogram(
                "tokenbridge_upstream_latency_seconds", "Arrival to end of requests that reached an upstream.",
                ["channel", "model"], buckets=LATENCY_BUCKETS_S, registry=reg,
            )
        )  # fmt: skip
        self.ttfb = Children(
            Histogram(
                "tokenbridge_upstream_ttfb_seconds", "Arrival to the first byte of the answer sent to the caller.",
                ["channel", "model"], buckets=TTFB_BUCKETS_S, registry=reg,
            )
        )  # fmt: skip
        self.breakers = Children(
            Gauge(
                "tokenbridge_breaker_state", "Circuit per channel and model: 0 closed, 1 half-open, 2 open"
                " (with --workers: the worst among live workers).",
                ["channel", "model"], multiprocess_mode="livemax", registry=reg,
            )
        )  # fmt: skip
        if self.registry is not None:
            self.registry.register(self.holds)
            self.registry.register(self.transactions)
        self.shown_circuits: set[tuple[str, str]] = set()  # (channel, model) pairs the last scrape showed
        if self.multiprocess:
            forget_dead_workers(os.environ[MULTIPROC_ENV])

    def request_ended(self, call: Call, *, route: str, status: int, end_reason: str, elapsed_s: float) -> None:
        """Everything one finished request adds; called once per request, by observe.py."""
        model = call.model
        if model and model not in call.settings.routes:
            model = OTHER
        channel = call.channel.name if call.channel is not None else ""
        self.requests.get(route, model, channel, status, end_reason).inc()
        usage = call.usage
        if usage is not None:
            source = call.usage_source
            self.tokens.get(model, "prompt", source).inc(usage.prompt_tokens)
            self.tokens.get(model, "completion", source).inc(usage.completion_tokens)
            if usage.cached_tokens:
                self.tokens.get(model, "cached", source).inc(usage.cached_tokens)
        if call.cost:
            self.spend.get(model).inc(call.cost)
        if call.attempts > 1:
            self.failovers.get(model).inc(call.attempts - 1)
        if channel:
            self.latency.get(channel, model).observe(elapsed_s)
            if call.ttfb is not None:
                self.ttfb.get(channel, model).observe(call.ttfb)

    def breaker_changed(self, channel: str, model: str, state: str) -> None:
        self.breakers.get(channel, model).set(BREAKER_STATES[state])

    def render(self, *, settings: Settings, breakers: Breakers, open_holds: int, transactions: int = 0) -> bytes:
        """The exposition text. Every served (channel, model) shows its circuit, not only those that moved."""
        served = {(channel.name, model) for model, channels in settings.routes.items() for channel in channels}
        for channel_name, model in served:
            self.breaker_changed(channel_name, model, breakers.state(channel_name, model))
        for gone in self.shown_circuits - served:  # a reload dropped it: it must not stay open forever
            if self.multiprocess:  # other workers' files cannot be removed from here; closed reads as healthy
                self.breakers.get(*gone).set(BREAKER_STATES[CLOSED])
            else:
                self.breakers.metric.remove(*gone)
                self.breakers.cache.pop(gone, None)
        self.shown_circuits = served
        self.holds.value = open_holds
        self.transactions.value = transactions
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # per scrape, as prometheus-client documents for multiprocess mode
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.holds)
        registry.register(self.transactions)
        return generate_latest(registry)

    def close(self) -> None:
        """At a worker's end: its live-only gauges (the breakers) stop counting."""
        if self.multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def forget_dead_workers(directory: str) -> None:
    """A worker killed without its shutdown (SIGKILL, the OOM killer) left its live gauges' files: its last
    breaker states would count among the live ones for good. Each new worker drops those of dead pids."""
    for name in os.listdir(directory):
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            pass
