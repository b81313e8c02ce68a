"""The chat page in headless Chromium against a real server: ask, switch mode, expand details, give feedback."""

from __future__ import annotations

import os

import pytest

from rjepa_core.interactions import read_jsonl
from tests.chromium import ARGS, CHROMIUM

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: apt-get install -y chromium to run the browser test"
)


def save_decoder(root, tokenizer) -> None:
    """The decoder of the live server's checkpoint (llm tiny, version v1), writing "3 + 4 = 7" for any latent."""
    from rjepa_core.store.layout import StorageLayout
    from tests.serve.test_modes import _decoder_for

    _decoder_for(tokenizer).save(StorageLayout(root).decoder_dir("tiny", "v1"), llm_tag="tiny")


@pytest.fixture(scope="module")
def page(live_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def test_chat_page_round_trip(page, live_server, tiny_student):
    from playwright.sync_api import expect

    from rjepa_serve.state import interactions_dir

    page.goto(live_server.url + "/")
    expect(page.locator("#health")).to_contain_text("run-a")
    expect(page.locator("#nudge-controls")).to_be_hidden()  # mode settings show only with their mode
    expect(page.locator("#plan-controls")).to_be_hidden()

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

    # NUDGE: every step is above a zero threshold (surprises are distances), so each one shows its decision
    page.check('input[name="mode"][value="NUDGE"]')
    expect(page.locator("#nudge-controls")).to_be_visible()
    page.fill("#nudge-threshold", "0")
    page.fill("#nudge-m", "2")
    page.fill("#temperature", "0.9")
    page.click("#ask")
    expect(page.locator("#mode-used")).to_have_text("NUDGE")
    expect(page.locator("#nudge-table")).to_be_visible()
    expect(page.locator("#mode-notes")).to_contain_text("threshold from the request")
    assert page.locator("#nudge-rows tr").count() <= page.locator("#steps li").count()
    assert page.locator("#steps li.nudged").count() == page.locator("#nudge-rows tr", has_text="nudged").count()

    # PLAN without a latent decoder: the page shows the service's message, which says what to materialize
    page.check('input[name="mode"][value="PLAN"]')
    expect(page.locator("#nudge-controls")).to_be_hidden()
    page.fill("#plan-steps", "3 + 4 = 7")
    page.click("#ask")
    expect(page.locator("#error")).to_contain_text("latent_decoder")
    # ... and once the decoder is materialized, the same click plans (the service finds it without a reload)
    save_decoder(live_server.settings.storage, tiny_student.tokenizer)
    page.click("#ask")
    expect(page.locator("#mode-used")).to_have_text("PLAN")
    expect(page.locator("#plan-rows tr")).to_have_count(2)
    expect(page.locator("#steps li.planned")).to_have_count(2)
    expect(page.locator("#plan-rows tr").first).to_contain_text("3 + 4 = 7")

    page.check('input[name="mode"][value="RERANK"]')
    page.fill("#temperature", "0")
    page.click("#ask")
    expect(page.locator("#mode-used")).to_have_text("RERANK")
    expect(page.locator("#nudge-table")).to_be_hidden()
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
