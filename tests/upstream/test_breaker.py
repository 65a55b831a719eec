"""The circuit breaker's state machine, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from tokenbridge.circuits import CLOSED, HALF_OPEN, OPEN, Transition
from tokenbridge.settings import BreakerSettings
from tokenbridge.upstream.breaker import Breakers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[Transition]:
    return []


def make(clock: Clock, changes: list[Transition], **overrides: float) -> Breakers:
    settings = BreakerSettings(
        **{"failures": 3, "window": 10, "error_ratio": 0.5, "cooldown_s": 5.0, "max_cooldown_s": 30.0, **overrides}
    )  # type: ignore[arg-type]
    return Breakers(settings, on_change=changes.append, clock=clock)


def fail(b: Breakers, times: int = 1) -> None:
    for _ in range(times):
        assert b.admit("c", "m")
        b.record("c", "m", ok=False, reason="HTTP 500")


def test_breaker_opens_after_consecutive_failures_and_refuses_traffic(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 2)
    assert b.state("c", "m") == CLOSED and b.available("c", "m")
    fail(b)
    assert b.state("c", "m") == OPEN
    assert not b.available("c", "m") and not b.admit("c", "m")
    assert [(t.state, t.retry_in_s) for t in changes] == [(OPEN, 5.0)]
    assert "3 consecutive failures" in changes[0].reason and "HTTP 500" in changes[0].reason


def test_breaker_success_resets_the_consecutive_count(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 2)
    b.record("c", "m", ok=True)
    fail(b, 2)
    assert b.state("c", "m") == CLOSED


def test_breaker_opens_on_error_ratio_over_the_window(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes, failures=100)
    for i in range(11):  # ends on a failure: the ratio is looked at when one is recorded
        b.record("c", "m", ok=i % 2 == 1, reason="HTTP 502")  # 50 % failures, never 2 in a row
    assert b.state("c", "m") == OPEN and "50% of the last 10" in changes[-1].reason


def test_breaker_lets_exactly_one_probe_through_after_the_cooldown(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 3)
    clock.now += 4.9
    assert not b.available("c", "m")
    clock.now += 0.2
    assert b.available("c", "m")
    assert b.admit("c", "m")  # the probe
    assert b.state("c", "m") == HALF_OPEN
    assert not b.admit("c", "m") and not b.available("c", "m")  # everyone else waits for its verdict


def test_breaker_closes_when_the_probe_succeeds(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 3)
    clock.now += 5
    assert b.admit("c", "m")
    b.record("c", "m", ok=True)
    assert b.state("c", "m") == CLOSED and b.admit("c", "m") and b.admit("c", "m")
    assert [t.state for t in changes] == [OPEN, HALF_OPEN, CLOSED]


def test_breaker_failed_probe_doubles_the_cooldown_up_to_the_ceiling(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 3)
    backoffs = []
    for _ in range(4):
        clock.now += 1000
        assert b.admit("c", "m")
        b.record("c", "m", ok=False, reason="refused")
        backoffs.append(changes[-1].retry_in_s)
    assert backoffs == [10.0, 20.0, 30.0, 30.0]
    clock.now += 1000
    assert b.admit("c", "m")
    b.record("c", "m", ok=True)
    fail(b, 3)
    assert changes[-1].retry_in_s == 5.0  # closing reset the back-off


def test_breaker_release_frees_the_probe_without_a_verdict(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 3)
    clock.now += 5
    assert b.admit("c", "m")
    b.release("c", "m")
    assert b.state("c", "m") == HALF_OPEN and b.admit("c", "m")


def test_breaker_circuits_are_per_channel_and_model(clock: Clock, changes: list[Transition]) -> None:
    b = make(clock, changes)
    fail(b, 3)
    assert b.admit("c", "other-model") and b.admit("other-channel", "m")
    assert not b.admit("c", "m")


def test_breaker_retry_in_is_the_wait_until_the_first_channel_may_be_tried(
    clock: Clock, changes: list[Transition]
) -> None:
    b = make(clock, changes)
    assert b.retry_in(["c", "other"], "m") == 0.0  # nothing failed: either may be tried now
    fail(b, 3)
    assert b.retry_in(["c"], "m") == 5.0
    clock.now += 2
    assert b.retry_in(["c"], "m") == 3.0
    assert b.retry_in(["c", "other"], "m") == 0.0  # the closed one may be tried now
    clock.now += 3
    assert b.admit("c", "m")  # takes the probe: half-open, its outcome not known yet
    assert b.retry_in(["c"], "m") == 0.0
