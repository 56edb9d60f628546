"""The circuit breaker of a replica, on an injected clock: open after `threshold` failures in a
row, half-open after the cooldown with exactly one trial, closed by a good trial, open for
longer after a bad one."""

from __future__ import annotations

from inference.dispatch.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, cooldown_s=2.0, max_cooldown_s=5.0, clock=clock)


def test_opens_after_the_threshold_and_half_opens_after_the_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    b.failure()
    b.failure()
    assert b.state == "closed" and b.allows()
    b.failure()
    assert b.state == "open" and not b.allows() and not b.would_allow()
    clock.now += 1.99
    assert b.state == "open" and not b.allows()
    clock.now += 0.01
    assert b.state == "half-open" and b.would_allow()
    assert b.allows()  # the one trial
    assert not b.allows() and not b.would_allow()  # no second request while the trial runs
    b.success()
    assert b.state == "closed" and b.allows()


def test_a_success_resets_the_count() -> None:
    b = breaker(Clock())
    for _ in range(5):
        b.failure()
        b.failure()
        b.success()
    assert b.state == "closed"


def test_a_failed_trial_stays_open_for_longer_up_to_the_cap() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 2.0
    assert b.allows()
    b.failure()  # the trial failed: 4 s now
    assert b.state == "open"
    clock.now += 3.9
    assert b.state == "open"
    clock.now += 0.1
    assert b.allows()
    b.failure()  # 8 s, capped at 5
    clock.now += 4.9
    assert b.state == "open"
    clock.now += 0.1
    assert b.state == "half-open" and b.allows()
    b.success()
    for _ in range(3):  # closed again: the cooldown is back to its base
        b.failure()
    clock.now += 2.0
    assert b.state == "half-open"


def test_a_trial_without_a_verdict_frees_the_slot() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure()
    clock.now += 2.0
    assert b.allows() and not b.allows()
    b.release_trial()  # the client went away mid-trial
    assert b.state == "half-open" and b.allows()


def test_failures_of_requests_already_in_flight_do_not_lengthen_the_cooldown() -> None:
    """Ten requests on a replica that dies fail together: the circuit opens once, for the base
    cooldown; only a failed half-open trial doubles it."""
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.failure()
    assert b.state == "open"
    clock.now += 2.0
    assert b.state == "half-open"
