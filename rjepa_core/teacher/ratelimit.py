"""Request and token rate limits per teacher (sliding one-minute window).

    >>> rl = RateLimiter(rpm=600, tpm=100_000)
    >>> slot = rl.acquire(tokens=500)   # blocks while the window is full
    >>> slot.waited_s
    0.0
    >>> rl.settle(slot, actual_tokens=420)

`acquire` blocks until both the request count and the token count of the last 60 s leave room;
`settle` replaces a call's estimate by its actual usage once the response arrives.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class Slot:
    at: float  # clock time the request was let through
    tokens: int  # tokens counted against the window (estimate, then actual)
    waited_s: float = 0.0  # seconds `acquire` blocked


class RateLimiter:
    def __init__(self, rpm: int | None = None, tpm: int | None = None, window_s: float = 60.0, clock=time.monotonic):
        self.rpm = rpm  # max requests per window (None: unlimited)
        self.tpm = tpm  # max tokens per window (None: unlimited)
        self.window_s = window_s  # window length in seconds
        self._clock = clock
        self._events: deque[Slot] = deque()  # requests still in the window
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._events and self._events[0].at <= now - self.window_s:
            self._events.popleft()

    def _wait_needed(self, now: float, tokens: int) -> float:
        waits = [0.0]
        if self.rpm is not None and len(self._events) >= self.rpm:
            waits.append(self._events[len(self._events) - self.rpm].at + self.window_s - now)
        if self.tpm is not None:
            used = sum(e.tokens for e in self._events)
            excess = used + min(tokens, self.tpm) - self.tpm
            for e in self._events:  # wait until enough old tokens leave the window
                if excess <= 0:
                    break
                excess -= e.tokens
                waits.append(e.at + self.window_s - now)
        return max(waits)

    def acquire(self, tokens: int = 0) -> Slot:
        """Block until a call of `tokens` fits in the window; return its slot (pass it to `settle`)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._prune(now)
                wait = self._wait_needed(now, tokens)
                if wait <= 0:
                    slot = Slot(now, tokens, waited)
                    self._events.append(slot)
                    return slot
            time.sleep(min(wait, self.window_s))
            waited += wait

    def settle(self, slot: Slot, actual_tokens: int) -> None:
        with self._lock:
            slot.tokens = actual_tokens
