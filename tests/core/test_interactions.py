"""Interaction log: PII filter, user hashing, consent, atomic deletion, concurrent appends."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest

from rjepa_core.interactions import (
    Interaction,
    InteractionLog,
    hash_user,
    iban_ok,
    load_or_create_salt,
    luhn_ok,
    read_jsonl,
    scrub_pii,
)


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to bob.smith+x@example.co.uk today", "write to [EMAIL] today", "email"),
        ("card 4111 1111 1111 1111 please", "card [CARD] please", "card"),
        ("card 4111-1111-1111-1111", "card [CARD]", "card"),
        ("IBAN GB82 WEST 1234 5698 7654 32 ok", "IBAN [IBAN] ok", "iban"),
        ("IBAN DE89370400440532013000", "IBAN [IBAN]", "iban"),
        ("from 192.168.0.1.", "from [IP].", "ip"),
        ("v6 2001:db8::1 here", "v6 [IP] here", "ip"),
        ("call +33 6 12 34 56 78", "call [PHONE]", "phone"),
        ("call (555) 123-4567", "call [PHONE]", "phone"),
        ("call 555-123-4567 now", "call [PHONE] now", "phone"),
        ("or +14155552671", "or [PHONE]", "phone"),
        ("ssn 123-45-6789", "ssn [ID]", "id_number"),
        ("my key is sk-proj-AbC123xyz789DEF456ghi, thanks", "my key is [SECRET], thanks", "secret"),
        ("token ghp_1234567890abcdefghijABCDEFGHIJ ok", "token [SECRET] ok", "secret"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [SECRET] here", "secret"),
        ("header Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc", "header Authorization: [SECRET]", "secret"),
        ("hf hf_AbCdEfGhIjKlMnOpQrStUv", "hf [SECRET]", "secret"),
    ],
)
def test_scrub_pii_removes_each_kind(text, expected, kind):
    out, counts = scrub_pii(text)
    assert out == expected and counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "Step 1: 12 - 5 = 7, 3.14 * 2 = 6.28, 100 + 200 = 300",
        "card 4111 1111 1111 1112 fails Luhn",
        "Step 2: 48 / 2 = 24 clips, and 24 + 48 = 72",
        "at 12:30:45 on 2024-01-15 the value was 1,234,567",
        "Total 1234567 apples; 1 2 3 4 5 6 7 8 9",
        "version 1.2.3.4.5 and 256.1.1.1",
        "the task-specific risk-free rate; sk-learn and a desk-top",
    ],
)
def test_scrub_pii_leaves_ordinary_reasoning_alone(text):
    assert scrub_pii(text) == (text, {})


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82 WEST 1234 5698 7654 33")


def test_hash_user_is_salted_and_stable():
    assert hash_user("ann", "a") == hash_user("ann", "a") != hash_user("ann", "b")
    assert len(hash_user("ann", "a")) == 64 and "ann" not in hash_user("ann", "a")


def test_salt_is_created_once_and_private(tmp_path):
    p = tmp_path / "salt"
    s1 = load_or_create_salt(p)
    assert load_or_create_salt(p) == s1 and len(s1) >= 32
    assert (p.stat().st_mode & 0o777) == 0o600


def test_consent_decides_what_text_is_kept(tmp_path):
    log = InteractionLog(tmp_path, salt="s")
    kept = log.append(Interaction(prompt="mail a@b.io", answer="4", steps=["x=4 at 10.0.0.1"], consent=True))
    dropped = log.append(Interaction(prompt="secret", answer="4", steps=["x"], consent=False, rating="down"))
    assert kept["prompt"] == "mail [EMAIL]" and kept["steps"] == ["x=4 at [IP]"] and kept["text_kept"]
    assert kept["pii_redactions"] == {"email": 1, "ip": 1}
    assert dropped["prompt"] is None and dropped["steps"] == [] and dropped["answer"] is None
    assert dropped["num_steps"] == 1 and dropped["rating"] == "down" and not dropped["text_kept"]
    assert "secret" not in "".join(p.read_text() for p in log.files())
    off = InteractionLog(tmp_path, salt="s", collect_text=False)  # workspace opt-out wins over consent
    assert off.append(Interaction(prompt="hello", consent=True))["prompt"] is None


def test_lines_go_to_the_utc_date_file(tmp_path):
    log = InteractionLog(tmp_path, salt="s")
    log.append(Interaction(prompt="p", consent=True), now=datetime(2026, 1, 2, 23, 59, tzinfo=UTC))
    assert [p.name for p in log.files()] == ["2026-01-02.jsonl"]
    assert log.read("2026-01-02")[0]["created_at"].startswith("2026-01-02T23:59")


def test_bad_rating_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rating"):
        InteractionLog(tmp_path, salt="s").append(Interaction(rating="meh"))


def test_concurrent_appends_give_complete_lines(tmp_path):
    log = InteractionLog(tmp_path, salt="s")

    def worker(n: int) -> None:
        for i in range(25):
            log.append(Interaction(prompt=f"w{n} q{i} " + "x" * 3000, consent=True, user_id=f"u{n}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [line for p in log.files() for line in p.read_text().splitlines()]
    assert len(lines) == 100
    assert all(json.loads(line)["prompt"].startswith("w") for line in lines)


def test_delete_user_across_files_is_atomic_and_exact(tmp_path):
    log = InteractionLog(tmp_path, salt="s")
    for day in (1, 2):
        for user in ("ann", "bob", "ann"):
            log.append(Interaction(prompt=user, consent=True, user_id=user), now=datetime(2026, 3, day, tzinfo=UTC))
    with open(log.path_for("2026-03-02"), "a") as f:
        f.write('{"torn": ')  # a torn line is kept as it was, not judged
    assert log.delete_user("ann") == 4
    assert [r["prompt"] for r in log.read()] == ["bob", "bob"]
    assert log.path_for("2026-03-02").read_text().endswith('{"torn": ')
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert log.delete_user("ann") == 0
    assert len(read_jsonl(log.path_for("2026-03-01"))) == 1
