"""A circuit breaker per (channel, model): stop sending traffic to a channel that keeps failing,
let one probe through after a back-off, and close again when it succeeds.

    closed ──(N consecutive failures, or error ratio ≥ R over the last W outcomes)──> open
    open ──(cool-down elapsed; the next request takes the one probe)──> half-open
    half-open ──(probe succeeds)──> closed        half-open ──(probe fails)──> open, cool-down × 2

The cool-down doubles on each failed probe up to a ceiling and resets when the circuit closes, so a
dead channel costs one request per back-off, not one per caller (one-api #1090, New API #224). A
channel switched off in config (`enabled = false`) never reaches a breaker: no probe re-enables it.
Pure state, no I/O: the clock is injected, and every transition is reported to `on_change`
(logged, and stored so `tokenbridge channels check` can say why a channel is out).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tokenbridge.circuits import CLOSED, HALF_OPEN, OPEN, Transition
from tokenbridge.settings import BreakerSettings


@dataclass(slots=True)
class _Circuit:
    state: str = CLOSED
    consecutive: int = 0
    outcomes: deque[bool] = field(default_factory=deque)  # True = failure, newest last
    cooldown_s: float = 0.0
    open_until: float = 0.0
    probing: bool = False


class Breakers:
    """Every circuit of one process, keyed by (channel name, public model)."""

    def __init__(
        self,
        settings: BreakerSettings,
        *,
        on_change: Callable[[Transition], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._on_change = on_change
        self._clock = clock
        self._circuits: dict[tuple[str, str], _Circuit] = {}

    def available(self, channel: str, model: str) -> bool:
        """May this channel be a candidate? (Closed, or open with its back-off over: a probe is due.)"""
        circuit = self._circuits.get((channel, model))
        if circuit is None or circuit.state == CLOSED:
            return True
        if circuit.state == OPEN:
            return self._clock() >= circuit.open_until
        return not circuit.probing

    def retry_in(self, channels: Iterable[str], model: str) -> float:
        """Seconds until the first of these channels may be tried again (0: one may be now, or its probe is out)."""
        now = self._clock()
        return min((self._wait(self._circuits.get((name, model)), now) for name in channels), default=0.0)

    @staticmethod
    def _wait(circuit: _Circuit | None, now: float) -> float:
        return max(0.0, circuit.open_until - now) if circuit is not None and circuit.state == OPEN else 0.0

    def admit(self, channel: str, model: str) -> bool:
        """Take the right to send one request now; for a circuit due a probe, only the first asker gets it."""
        circuit = self._circuits.get((channel, model))
        if circuit is None or circuit.state == CLOSED:
            return True
        if circuit.state == OPEN and self._clock() >= circuit.open_until:
            circuit.state, circuit.probing = HALF_OPEN, True
            self._report(channel, model, circuit, "back-off over: one probe goes through")
            return True
        if circuit.state == HALF_OPEN and not circuit.probing:
            circuit.probing = True
            return True
        return False

    def record(self, channel: str, model: str, *, ok: bool, reason: str = "") -> None:
        """The outcome of an admitted request."""
        key = (channel, model)
        circuit = self._circuits.get(key)
        if circuit is None:
            if ok:
                return  # the common case stays allocation-free
            circuit = self._circuits[key] = _Circuit(cooldown_s=self.settings.cooldown_s)
        if circuit.state == HALF_OPEN:
            circuit.probing = False
            if ok:
                del self._circuits[key]
                self._report(channel, model, _Circuit(), "probe succeeded")
            else:
                circuit.cooldown_s = min(circuit.cooldown_s * 2, self.settings.max_cooldown_s)
                self._open(channel, model, circuit, f"probe failed: {reason}")
            return
        self._remember(circuit, failed=not ok)
        if ok:
            return
        if circuit.consecutive >= self.settings.failures:
            self._open(channel, model, circuit, f"{circuit.consecutive} consecutive failures, the last: {reason}")
        elif len(circuit.outcomes) >= self.settings.window:
            ratio = sum(circuit.outcomes) / len(circuit.outcomes)
            if ratio >= self.settings.error_ratio:
                self._open(channel, model, circuit, f"{ratio:.0%} of the last {len(circuit.outcomes)} failed: {reason}")

    def release(self, channel: str, model: str) -> None:
        """An admitted request ended with no verdict on the channel (the caller left): free the probe."""
        circuit = self._circuits.get((channel, model))
        if circuit is not None and circuit.state == HALF_OPEN:
            circuit.probing = False

    def state(self, channel: str, model: str) -> str:
        circuit = self._circuits.get((channel, model))
        return CLOSED if circuit is None else circuit.state

    def _remember(self, circuit: _Circuit, *, failed: bool) -> None:
        circuit.consecutive = circuit.consecutive + 1 if failed else 0
        circuit.outcomes.append(failed)
        if len(circuit.outcomes) > self.settings.window:
            circuit.outcomes.popleft()

    def _open(self, channel: str, model: str, circuit: _Circuit, reason: str) -> None:
        circuit.state, circuit.probing = OPEN, False
        circuit.open_until = self._clock() + circuit.cooldown_s
        circuit.consecutive = 0
        circuit.outcomes.clear()
        self._report(channel, model, circuit, reason)

    def _report(self, channel: str, model: str, circuit: _Circuit, reason: str) -> None:
        retry = circuit.cooldown_s if circuit.state == OPEN else 0.0
        self._on_change(Transition(channel, model, circuit.state, reason, retry))
