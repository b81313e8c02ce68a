"""Spend tracking per job with a hard cap: a call runs only if its worst case still fits.

    >>> b = BudgetTracker(cap_usd=0.01, prices={"m": (1.0, 2.0)})   # USD per million tokens
    >>> b.can_afford("m", prompt_tokens=1000, max_completion_tokens=1000)
    True
    >>> b.charge("m", prompt_tokens=1000, completion_tokens=500)      # 0.001 + 0.001
    0.002

The worst case of a call is its prompt (counted as UTF-8 bytes, never fewer than its tokens)
plus `max_tokens` of completion, so the cap is never crossed; when the next call does not fit,
the job stops cleanly and keeps what it paid for (`exhausted` tells why).
"""

from __future__ import annotations

import fnmatch
import threading
from pathlib import Path

import yaml

DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "configs" / "teachers" / "prices.yaml"


class BudgetExceeded(RuntimeError):
    """Raised by `reserve` when a call would cross the job's cap."""


def load_prices(path: str | Path = DEFAULT_PRICES) -> dict[str, tuple[float, float]]:
    """Model pattern -> (USD per M input tokens, USD per M output tokens); key "default" is the fallback."""
    data = yaml.safe_load(Path(path).read_text())
    prices = {k: (float(v["input"]), float(v["output"])) for k, v in (data.get("models") or {}).items()}
    d = data.get("default") or {"input": 0.0, "output": 0.0}
    prices["default"] = (float(d["input"]), float(d["output"]))
    return prices


class BudgetTracker:
    def __init__(self, cap_usd: float | None, prices: dict[str, tuple[float, float]] | None = None):
        self.cap_usd = cap_usd  # hard cap for the job in USD (None: no cap, spend still tracked)
        self.prices = prices if prices is not None else load_prices()
        self.spent_usd = 0.0
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.by_model: dict[str, float] = {}
        self.reserved_usd = 0.0  # worst cases of calls in flight (so concurrent calls cannot overrun)
        self.exhausted = ""  # why the job stopped on budget ("" while it has not)
        self._lock = threading.Lock()

    def price(self, model: str) -> tuple[float, float]:
        if model in self.prices:
            return self.prices[model]
        for pattern, p in self.prices.items():
            if pattern != "default" and fnmatch.fnmatch(model, pattern):
                return p
        return self.prices.get("default", (0.0, 0.0))

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        pin, pout = self.price(model)
        return (prompt_tokens * pin + completion_tokens * pout) / 1e6

    def can_afford(self, model: str, prompt_tokens: int, max_completion_tokens: int) -> bool:
        if self.cap_usd is None:
            return True
        worst = self.cost(model, prompt_tokens, max_completion_tokens)
        with self._lock:
            return self.spent_usd + self.reserved_usd + worst <= self.cap_usd + 1e-12

    def reserve(self, model: str, prompt_tokens: int, max_completion_tokens: int) -> float:
        """Hold the call's worst-case cost (release it with `release`); BudgetExceeded if it does not fit."""
        worst = self.cost(model, prompt_tokens, max_completion_tokens)
        with self._lock:
            if self.cap_usd is not None and self.spent_usd + self.reserved_usd + worst > self.cap_usd + 1e-12:
                self.exhausted = (
                    f"budget cap reached: spent ${self.spent_usd:.4f} of ${self.cap_usd:.4f}; "
                    f"the next call could cost up to ${worst:.4f}"
                )
                raise BudgetExceeded(self.exhausted)
            self.reserved_usd += worst
        return worst

    def release(self, amount: float) -> None:
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - amount)

    def charge(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Record a call's actual usage; return its cost in USD."""
        c = self.cost(model, prompt_tokens, completion_tokens)
        with self._lock:
            self.spent_usd += c
            self.calls += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.by_model[model] = self.by_model.get(model, 0.0) + c
        return round(c, 10)

    def report(self) -> dict:
        return {
            "spent_usd": round(self.spent_usd, 6),
            "cap_usd": self.cap_usd,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "spent_by_model": {k: round(v, 6) for k, v in self.by_model.items()},
            "stopped_on_budget": bool(self.exhausted),
            "budget_note": self.exhausted,
        }
