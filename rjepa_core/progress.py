"""Progress reporting for long steps: counts, rate and ETA, throttled, through any `log(str)` callable.

>>> p = Progress(total=1000, label="extract", log=print)
>>> for _ in range(1000):
...     p.update(1)
>>> p.done()
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    def __init__(self, total: int, label: str, log: Callable[[str], None] | None = None, every_s: float = 10.0):
        self.total = max(int(total), 0)
        self.label = label
        self.log = log
        self.every_s = every_s
        self.count = 0
        self.start = time.monotonic()
        self._last = self.start

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def message(self) -> str:
        rate = self.count / self.elapsed if self.elapsed > 0 else 0.0
        left = (self.total - self.count) / rate if rate > 0 else float("nan")
        eta = f"{left:.0f}s" if left == left else "?"
        return f"{self.label}: {self.count}/{self.total} ({rate:.2f}/s, elapsed {self.elapsed:.0f}s, ETA {eta})"

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if self.log and now - self._last >= self.every_s:
            self._last = now
            self.log(self.message())

    def done(self) -> float:
        if self.log:
            self.log(f"{self.label}: done {self.count} in {self.elapsed:.1f}s")
        return self.elapsed
