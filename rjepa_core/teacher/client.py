"""OpenAI-compatible teacher client: retries, rate limits, budget cap, JSON repair, key-free logs.

    >>> t = load_teachers()["local"]                       # TEACHER_LOCAL_BASE_URL / _MODEL / _API_KEY
    >>> client = TeacherClient(t, budget=BudgetTracker(cap_usd=1.0), log_path="logs/teacher.jsonl")
    >>> value, result = client.chat_json(load_prompt("multi_cot").render(statement="2+3?", domain="math", style=""))
    >>> value["final_answer"], result.cost_usd

Retries are ours, not the SDK's (`max_retries=0` on the `openai` client): tenacity retries
429, 5xx, timeouts and connection errors up to `settings.max_retries` times, waiting what the
server asks (`retry-after-ms` or `Retry-After`, capped at `max_wait_s`) or else an exponential
backoff with full jitter. Each attempt first passes the rate limiter; each call first reserves
its worst-case cost in the budget (so a cap is never crossed) and is charged its reported usage
(or an estimate, flagged, when the server sends none).

Logs: one JSON line per attempt (messages, reply, status, usage, cost, waits) at `log_path`.
The API key is never written: it lives in a SecretStr read only when building the HTTP client,
and every log line is scrubbed of it as a second guard.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from rjepa_core.teacher.budget import BudgetTracker
from rjepa_core.teacher.jsonrepair import JSONExtractionError, extract_json
from rjepa_core.teacher.ratelimit import RateLimiter
from rjepa_core.teacher.settings import TeacherSettings

log = logging.getLogger("rjepa.teacher")

_RETRY_JSON = "Your previous reply was not valid JSON. Reply again with the JSON only, complete, nothing else."


@dataclass
class ChatResult:
    text: str  # the assistant message content
    prompt_tokens: int  # from the response's usage (or estimated)
    completion_tokens: int  # from the response's usage (or estimated)
    cost_usd: float  # charged to the budget
    finish_reason: str  # "stop", "length" (truncated), ...
    attempts: int  # HTTP attempts made (1 = no retry)
    usage_estimated: bool  # True when the server sent no usage
    waited_s: float  # seconds spent waiting on retries and rate limits


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 409))


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `Retry-After` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _estimate_tokens(text: str) -> int:
    return len(text.encode("utf-8"))  # BPE tokens are at least one byte: a safe upper bound


class TeacherClient:
    def __init__(
        self,
        settings: TeacherSettings,
        budget: BudgetTracker | None = None,
        limiter: RateLimiter | None = None,
        log_path: str | Path | None = None,
        max_wait_s: float = 60.0,
        backoff_base_s: float = 0.5,
    ):
        self.settings = settings  # endpoint, model, limits (key inside as SecretStr)
        self.budget = budget  # default job budget (a call may pass its own)
        self.limiter = limiter or RateLimiter(rpm=settings.rpm, tpm=settings.tpm)
        self.log_path = Path(log_path) if log_path else None  # JSONL request/response log (no keys)
        self.max_wait_s = max_wait_s  # cap on any single retry wait, Retry-After included
        self.backoff_base_s = backoff_base_s  # first backoff step; grows x2 per attempt, full jitter
        self._secret = settings.api_key.get_secret_value()
        self._client = openai.OpenAI(
            base_url=settings.base_url, api_key=self._secret, max_retries=0, timeout=settings.timeout_s
        )
        self._log_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def model(self) -> str:
        return self.settings.model

    def __repr__(self) -> str:
        return f"TeacherClient(name={self.name!r}, model={self.model!r}, base_url={self.settings.base_url!r})"

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(exc) if exc else None
        if asked is not None:
            return min(asked, self.max_wait_s)
        return wait_random_exponential(multiplier=self.backoff_base_s, max=self.max_wait_s)(state)

    def _log(self, entry: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        line = json.dumps(entry, ensure_ascii=False, default=str)
        if len(self._secret) >= 4:
            line = line.replace(self._secret, "***")
        with self._log_lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        budget: BudgetTracker | None = None,
        purpose: str = "",
    ) -> ChatResult:
        """One chat completion with retries; raises BudgetExceeded before spending past the cap."""
        budget = budget or self.budget
        max_tokens = max_tokens or self.settings.max_tokens
        temperature = self.settings.temperature if temperature is None else temperature
        prompt_est = _estimate_tokens("".join(m["content"] for m in messages))
        held = budget.reserve(self.model, prompt_est, max_tokens) if budget is not None else 0.0
        waited = 0.0
        attempts = 0

        def attempt():
            nonlocal waited, attempts
            attempts += 1
            slot = self.limiter.acquire(prompt_est + max_tokens)
            waited += slot.waited_s
            entry = {"ts": datetime.now(UTC).isoformat(), "teacher": self.name, "model": self.model}
            entry |= {"purpose": purpose, "attempt": attempts, "rate_wait_s": round(slot.waited_s, 3)}
            entry["request"] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
            t0 = time.monotonic()
            try:
                resp = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature
                )
            except Exception as e:
                entry |= {"error": f"{type(e).__name__}: {e}", "status": getattr(e, "status_code", None)}
                entry |= {"retry_after_s": retry_after_seconds(e), "latency_s": round(time.monotonic() - t0, 3)}
                self._log(entry)
                self.limiter.settle(slot, 0)
                raise
            choice = resp.choices[0] if resp.choices else None
            text = (choice.message.content if choice and choice.message else None) or ""
            usage = resp.usage
            estimated = usage is None
            p_tok = usage.prompt_tokens if usage else prompt_est
            c_tok = usage.completion_tokens if usage else _estimate_tokens(text)
            self.limiter.settle(slot, p_tok + c_tok)
            cost = budget.charge(self.model, p_tok, c_tok) if budget is not None else 0.0
            result = ChatResult(
                text=text,
                prompt_tokens=p_tok,
                completion_tokens=c_tok,
                cost_usd=cost,
                finish_reason=(choice.finish_reason if choice else None) or "",
                attempts=attempts,
                usage_estimated=estimated,
                waited_s=round(waited, 3),
            )
            entry |= {"status": 200, "latency_s": round(time.monotonic() - t0, 3), "response": asdict(result)}
            self._log(entry)
            return result

        def before_sleep(state: RetryCallState) -> None:
            nonlocal waited
            sleep = state.next_action.sleep if state.next_action else 0.0
            waited += sleep
            exc = state.outcome.exception()
            log.warning("teacher %s: %s, retry %d in %.2fs", self.name, type(exc).__name__, state.attempt_number, sleep)

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        finally:
            if budget is not None:
                budget.release(held)

    def chat_json(
        self,
        messages: list[dict[str, str]],
        *,
        expect: type | tuple[type, ...] = (dict, list),
        budget: BudgetTracker | None = None,
        purpose: str = "",
        **kw: Any,
    ) -> tuple[Any, ChatResult]:
        """Chat, then extract/repair JSON; if that fails, ask once more for JSON only."""
        result = self.chat(messages, budget=budget, purpose=purpose, **kw)
        try:
            return extract_json(result.text, expect), result
        except JSONExtractionError:
            log.warning("teacher %s: reply was not JSON, asking again", self.name)
        again = [*messages, {"role": "assistant", "content": result.text}, {"role": "user", "content": _RETRY_JSON}]
        second = self.chat(again, budget=budget, purpose=purpose + ":json-retry", **kw)
        return extract_json(second.text, expect), second
