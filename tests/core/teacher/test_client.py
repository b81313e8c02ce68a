"""TeacherClient against a real HTTP server: retries, Retry-After, timeouts, JSON repair, limits."""

from __future__ import annotations

import openai
import pytest

from rjepa_core.teacher.budget import BudgetExceeded, BudgetTracker
from rjepa_core.teacher.client import TeacherClient
from rjepa_core.teacher.ratelimit import RateLimiter
from rjepa_core.teacher.settings import TeacherSettings

MSGS = [{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": "Solve: What is 2 + 3?"}]


def _client(server, **kw) -> TeacherClient:
    s = TeacherSettings(
        name="fake",
        base_url=server.base_url,
        model="fake-model",
        api_key="sk-test",
        timeout_s=kw.pop("timeout_s", 5.0),
        max_retries=kw.pop("max_retries", 4),
    )
    return TeacherClient(s, backoff_base_s=0.01, **kw)


def test_429_retry_after_is_honoured(fake_server):
    fake_server.script = [{"status": 429, "retry_after": "1"}, {"status": 429, "retry_after": "0.3"}]
    result = _client(fake_server).chat(MSGS)
    assert result.attempts == 3
    t = [r["t"] for r in fake_server.requests]
    assert t[1] - t[0] >= 0.95 and t[2] - t[1] >= 0.28  # waited what the server asked
    assert result.waited_s >= 1.3
    assert '"final_answer": "5"' in result.text


def test_500s_and_slow_reply_are_retried(fake_server):
    fake_server.script = [{"status": 500}, {"status": 503}, {"sleep": 2.0}]
    result = _client(fake_server, timeout_s=0.5).chat(MSGS)
    assert result.attempts == 4  # 500, 503, timeout, success
    assert len(fake_server.requests) == 4


def test_gives_up_after_max_retries(fake_server):
    fake_server.script = [{"status": 500}] * 10
    with pytest.raises(openai.InternalServerError):
        _client(fake_server, max_retries=2).chat(MSGS)
    assert len(fake_server.requests) == 3


def test_client_errors_are_not_retried(fake_server):
    fake_server.script = [{"status": 400}]
    with pytest.raises(openai.BadRequestError):
        _client(fake_server).chat(MSGS)
    assert len(fake_server.requests) == 1


def test_truncated_json_is_repaired(fake_server):
    fake_server.script = [
        {"content": '```json\n{"steps": ["2 + 3 = 5", "so 5"], "final_answer": "5"', "finish_reason": "length"}
    ]
    value, result = _client(fake_server).chat_json(MSGS, expect=dict)
    assert value == {"steps": ["2 + 3 = 5", "so 5"], "final_answer": "5"}
    assert result.finish_reason == "length" and len(fake_server.requests) == 1


def test_malformed_json_gets_one_more_ask(fake_server):
    fake_server.script = [{"content": "I cannot answer in that format, sorry."}]
    value, _ = _client(fake_server).chat_json(MSGS, expect=dict)
    assert value["final_answer"] == "5"
    assert len(fake_server.requests) == 2
    assert "not valid JSON" in fake_server.requests[1]["body"]["messages"][-1]["content"]


def test_missing_usage_is_estimated_and_charged(fake_server):
    fake_server.usage = None
    budget = BudgetTracker(cap_usd=None, prices={"default": (1.0, 1.0)})
    result = _client(fake_server, budget=budget).chat(MSGS)
    assert result.usage_estimated and result.prompt_tokens > 0 and result.completion_tokens == len(result.text)
    assert budget.spent_usd > 0


def test_request_rate_limit_spaces_requests(fake_server):
    client = _client(fake_server, limiter=RateLimiter(rpm=2, window_s=1.0))
    for _ in range(3):
        client.chat(MSGS)
    t = [r["t"] for r in fake_server.requests]
    assert t[2] - t[0] >= 0.95  # the third request waited for the first to leave the window


def test_budget_cap_refuses_before_spending(fake_server):
    budget = BudgetTracker(cap_usd=0.001, prices={"default": (1000.0, 1000.0)})  # $0.001 per token
    with pytest.raises(BudgetExceeded):
        _client(fake_server, budget=budget).chat(MSGS, max_tokens=50)
    assert fake_server.requests == [] and budget.spent_usd == 0.0 and "budget cap reached" in budget.exhausted
