"""Settings from the environment, prices and budget, rate limiter, JSON repair, prompt templates."""

from __future__ import annotations

import pytest

from rjepa_core.teacher.budget import BudgetExceeded, BudgetTracker, load_prices
from rjepa_core.teacher.jsonrepair import JSONExtractionError, extract_json
from rjepa_core.teacher.prompts import load_prompt
from rjepa_core.teacher.ratelimit import RateLimiter
from rjepa_core.teacher.settings import load_teachers


def test_load_teachers_from_env():
    env = {
        "TEACHER_LOCAL_BASE_URL": "http://127.0.0.1:8000/v1",
        "TEACHER_LOCAL_MODEL": "qwen3-8b",
        "TEACHER_LOCAL_RPM": "60",
        "TEACHER_CLAUDE_PROXY_BASE_URL": "https://proxy.example/v1",
        "TEACHER_CLAUDE_PROXY_MODEL": "claude-sonnet-4-5",
        "TEACHER_CLAUDE_PROXY_API_KEY": "sk-abcdef123456",
        "UNRELATED": "x",
    }
    ts = load_teachers(env)
    assert sorted(ts) == ["claude_proxy", "local"]
    assert ts["local"].rpm == 60 and ts["local"].tpm is None and ts["local"].model == "qwen3-8b"
    c = ts["claude_proxy"]
    assert c.api_key.get_secret_value() == "sk-abcdef123456"
    assert "sk-abcdef123456" not in repr(c) + str(c) + c.model_dump_json()


def test_half_configured_teacher_says_what_to_set():
    with pytest.raises(ValueError, match="TEACHER_X_MODEL"):
        load_teachers({"TEACHER_X_BASE_URL": "http://h/v1"})


def test_prices_and_budget():
    prices = load_prices()
    b = BudgetTracker(cap_usd=0.01, prices=prices)
    assert b.price("gpt-4o-mini") == (0.15, 0.6)
    assert b.price("claude-sonnet-4-5-20250929") == (3.0, 15.0)  # pattern
    assert b.price("some-unknown-model") == prices["default"]
    assert b.charge("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert not b.can_afford("gpt-4o-mini", 10, 10)
    with pytest.raises(BudgetExceeded):
        b.reserve("gpt-4o-mini", 10, 10)
    assert b.report()["stopped_on_budget"]


def test_reservations_hold_room_for_calls_in_flight():
    b = BudgetTracker(cap_usd=1.0, prices={"default": (1e6, 0.0)})  # $1 per prompt token
    held = b.reserve("m", 1, 0)
    with pytest.raises(BudgetExceeded):
        b.reserve("m", 1, 0)
    b.release(held)
    b.reserve("m", 1, 0)


def test_token_rate_limit_waits_for_the_window():
    rl = RateLimiter(tpm=100, window_s=0.3)
    assert rl.acquire(80).waited_s == 0.0
    assert rl.acquire(40).waited_s > 0.0  # 80 + 40 > 100 within the window
    slot = rl.acquire(0)
    rl.settle(slot, 5)
    assert slot.tokens == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Here you go: {"a": [1, 2]} -- done', {"a": [1, 2]}),
        ('{"steps": ["x", "y"], "final_answer": "4"', {"steps": ["x", "y"], "final_answer": "4"}),
        ("{'a': 'single quotes', b: 2,}", {"a": "single quotes", "b": 2}),
        (
            '[{"statement": "s", "answer": "1"}, {"statement": "t"',
            [{"statement": "s", "answer": "1"}, {"statement": "t"}],
        ),
    ],
)
def test_extract_json(text, expected):
    assert extract_json(text) == expected


def test_extract_json_refuses_prose():
    with pytest.raises(JSONExtractionError):
        extract_json("I am sorry, I cannot help with that.")
    with pytest.raises(JSONExtractionError):
        extract_json('["a list"]', expect=dict)


def test_prompt_templates_render_and_name_missing_fields():
    for name in ("problem_generation", "multi_cot", "labelling"):
        assert load_prompt(name).template_id == f"{name}@v1"
    msgs = load_prompt("multi_cot").render(statement="What is {x}?", domain="math", style="")
    assert "What is {x}?" in msgs[1]["content"]
    with pytest.raises(ValueError, match="statement"):
        load_prompt("multi_cot").render(domain="math", style="")
    with pytest.raises(FileNotFoundError, match="known"):
        load_prompt("nope")
