"""A circuit breaker per replica: after `threshold` failures in a row the replica gets no
traffic for `cooldown_s` (doubling up to `max_cooldown_s` while it keeps failing); then one
trial request (half-open) decides whether it closes again."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._base = cooldown_s
        self._max = max_cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._cooldown = cooldown_s
        self._trial = False  # a half-open trial is in flight

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown:
            return "half-open"
        return "open"

    def allows(self) -> bool:
        """Whether a request may go to the replica now (claims the half-open trial)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def would_allow(self) -> bool:
        """Like allows() without claiming the trial (for ranking replicas)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._trial)

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._cooldown = self._base
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        if self._opened_at is not None:
            # Only a failed half-open trial lengthens the cooldown; requests that were already
            # in flight when the circuit opened fail too, and must not push it to the maximum.
            if self._trial:
                self._cooldown = min(self._cooldown * 2, self._max)
                self._opened_at = self._clock()
        elif self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._trial = False

    def release_trial(self) -> None:
        """The trial ended without a verdict (the client went away)."""
        self._trial = False
