"""The chat page in headless Chromium against a real server: ask, switch mode, expand details, give feedback."""

from __future__ import annotations

import os

import pytest

from rjepa_core.interactions import read_jsonl
from tests.chromium import ARGS, CHROMIUM

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: apt-get install -y chromium to run the browser test"
)


@pytest.fixture(scope="module")
def page(live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def test_chat_page_round_trip(page, live_server):
    from playwright.sync_api import expect

    from rjepa_serve.state import interactions_dir

    page.goto(live_server.url + "/")
    expect(page.locator("#health")).to_contain_text("run-a")

    page.fill("#prompt", "What is 3 + 4? Write to me at eve@example.com")
    page.fill("#temperature", "0")
    page.click("#ask")
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#mode-used")).to_have_text("OFF")
    expect(page.locator("#candidates-table")).to_be_hidden()

    page.check('input[name="mode"][value="RERANK"]')
    page.fill("#k", "3")
    page.click("#ask")
    expect(page.locator("#mode-used")).to_have_text("RERANK")
    page.click("#details summary")
    expect(page.locator("#candidates-table")).to_be_visible()
    expect(page.locator("#candidates tr")).to_have_count(3)
    expect(page.locator("#candidates .badge.chosen")).to_have_count(1)
    expect(page.locator("#candidates .badge.rejected")).to_have_count(2)
    steps = page.locator("#steps li").count()
    if steps:
        assert page.locator("#steps li.surprising").count() >= 1
        assert page.locator("#steps li.most-surprising").count() == 1  # the likeliest first mistake, outlined
    assert page.locator("#score01").inner_text() != ""

    page.check("#consent")
    page.click("#thumb-up")
    expect(page.locator("#feedback-status")).to_contain_text("Recorded")
    expect(page.locator("#thumb-up")).to_be_disabled()

    recs = [r for f in sorted(interactions_dir(live_server.settings).glob("*.jsonl")) for r in read_jsonl(f)]
    mine = [r for r in recs if r["prompt"] and r["prompt"].startswith("What is 3 + 4?")]
    assert len(mine) == 1
    rec = mine[0]
    assert rec["rating"] == "up" and rec["consent"] is True and rec["mode"] == "RERANK"
    assert rec["prompt"].endswith("[EMAIL]") and rec["source"] == "server" and rec["num_candidates"] == 3
    assert rec["user_hash"] and len(rec["user_hash"]) == 64
