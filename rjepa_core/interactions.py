"""User interaction log (SPEC F14, logging half): PII filtering, hashed user ids, consent, deletion.

    >>> import tempfile
    >>> log = InteractionLog(tempfile.mkdtemp(), salt="s3cret")
    >>> rec = log.append(Interaction(prompt="Mail me at bob@example.com: 2+2?", answer="4", steps=["2+2=4"],
    ...                              mode="OFF", rating="up", consent=True, user_id="bob"))
    >>> rec["prompt"], rec["user_hash"] == hash_user("bob", "s3cret")
    ('Mail me at [EMAIL]: 2+2?', True)
    >>> log.delete_user("bob")
    1

One JSON object per line in `<dir>/<YYYY-MM-DD>.jsonl` (UTC date). A line is written with one
`write()` on a file opened in append mode, under a thread lock and an advisory file lock shared
with deletions, so every line is complete and a reader never sees a partial rewrite. A reader skips
a trailing line that does not parse (a writer killed mid-line by the OS). Without consent (or with
text collection turned off for the workspace) no free text is kept: only mode, rating, scores,
counts and ids, so the record can be counted but never trained on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rjepa_core.io import atomic_path, is_temp_file, notify_commit

RATINGS = ("up", "down")
TEXT_FIELDS = ("prompt", "answer", "steps", "final_answer", "comment")

# --- PII patterns -------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d])")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
# API keys and tokens by their well-known shapes (OpenAI/Stripe-style sk-/pk-, GitHub, Slack, AWS access key
# ids, Hugging Face, Google API keys, "Bearer <token>"): a user pasting one must not store it.
_SECRET = re.compile(
    r"(?<![\w-])(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"
    r"|(?<![\w-])(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|(?<!\w)gh[pousr]_[A-Za-z0-9]{20,}"
    r"|(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])"
    r"|(?<!\w)hf_[A-Za-z0-9]{20,}"
    r"|(?<!\w)AIza[0-9A-Za-z_-]{35}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}"
)
# International (+cc ...) or grouped national numbers; the digit count (9-15) is checked after matching,
# so arithmetic such as "12 - 5 = 7" or "3.14" is never taken for a phone number.
_PHONE = re.compile(
    r"(?<![\w+(])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{1,4}){1,6}(?![\w])"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ipv6_ok(s: str) -> bool:
    if s.count(":") < 2 or not any(c.isalnum() for c in s):
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _phone_ok(s: str) -> bool:
    """9-15 digits, at most one one-digit group, and a '+', an area code in parentheses or >= 3 groups."""
    groups = re.findall(r"\d+", s)
    if not 9 <= sum(len(g) for g in groups) <= 15 or sum(len(g) == 1 for g in groups) > 1:
        return False
    return s.startswith(("+", "(")) or len(groups) >= 3


# (kind, pattern, replacement, extra check on the matched text); order matters: the most specific first.
_RULES: list[tuple[str, re.Pattern[str], str, Any]] = [
    ("secret", _SECRET, "[SECRET]", None),
    ("email", _EMAIL, "[EMAIL]", None),
    ("iban", _IBAN, "[IBAN]", iban_ok),
    ("card", _CARD, "[CARD]", lambda m: 13 <= len(_digits(m)) <= 19 and luhn_ok(_digits(m))),
    ("ip", _IPV4, "[IP]", None),
    ("ip", _IPV6, "[IP]", _ipv6_ok),
    ("id_number", _SSN, "[ID]", None),
    ("phone", _PHONE, "[PHONE]", _phone_ok),
]


def scrub_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace API keys/tokens, emails, IBANs, card numbers (Luhn-checked), IP addresses, id and phone numbers
    by tags.

    Returns the filtered text and how many of each kind were removed.
    """
    counts: dict[str, int] = {}
    for kind, pattern, tag, check in _RULES:

        def sub(m: re.Match[str], kind: str = kind, tag: str = tag, check: Any = check) -> str:
            if check is not None and not check(m.group(0)):
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return tag

        text = pattern.sub(sub, text)
    return text, counts


def hash_user(user_id: str, salt: str) -> str:
    """Salted sha256 of a user id: stable for one salt, not reversible without it."""
    return hashlib.sha256(f"{salt}\x1f{user_id}".encode()).hexdigest()


def load_or_create_salt(path: str | Path) -> str:
    """A random salt stored (0600) at `path`, created on first use, so hashes survive restarts."""
    path = Path(path)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = uuid.uuid4().hex + uuid.uuid4().hex
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(salt)
    return path.read_text(encoding="utf-8").strip()


@dataclass
class Interaction:
    prompt: str | None = None  # the user's question (free text: PII-filtered, dropped without consent)
    answer: str | None = None  # the answer text shown to the user
    steps: list[str] = field(default_factory=list)  # the answer's steps
    final_answer: str | None = None  # extracted final answer
    mode: str = "OFF"  # inference mode that produced the answer (OFF | RERANK | ...)
    rating: str | None = None  # "up" | "down" | None (no feedback yet)
    consent: bool = False  # the user agreed that the text may be used for training
    user_id: str | None = None  # raw user id: hashed before writing, never stored
    comment: str | None = None  # optional free-text feedback
    jepa: dict[str, Any] | None = None  # jepa_loss, score01, step_surprise of the answer (server-computed)
    num_candidates: int | None = None  # K in RERANK mode
    llm_tag: str | None = None  # student that wrote the answer
    checkpoint_id: str | None = None  # R-JEPA checkpoint that scored it
    interaction_id: str | None = None  # id given by /chat (a new one when missing)
    source: str = "client"  # "server": content taken from the service's own record of the chat
    extra: dict[str, Any] = field(default_factory=dict)  # non-text fields (latency, temperature, ...)


class InteractionLog:
    """Append-only JSONL interaction files with deletion by user; safe across threads and processes."""

    def __init__(self, directory: str | Path, salt: str, workspace: str = "default", collect_text: bool = True):
        self.directory = Path(directory)
        self.salt = salt
        self.workspace = workspace
        self.collect_text = collect_text  # workspace-level opt-out: False keeps no text whatever the consent
        self._lock = threading.Lock()

    def path_for(self, date: str) -> Path:
        return self.directory / f"{date}.jsonl"

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """No append or deletion (in any process) runs inside: the files hold whole lines, e.g. to copy them."""
        return self._locked()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.directory / ".lock", "a+") as lf:
            fcntl.flock(lf.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lf.fileno(), fcntl.LOCK_UN)

    def to_record(self, it: Interaction, now: datetime | None = None) -> dict[str, Any]:
        """The line that would be written: PII-filtered, user hashed, text dropped without consent."""
        if it.rating is not None and it.rating not in RATINGS:
            raise ValueError(f"rating must be one of {RATINGS} or null, got {it.rating!r}")
        now = now or datetime.now(UTC)
        keep_text = bool(it.consent and self.collect_text)
        rec = asdict(it)
        user_id = rec.pop("user_id")
        rec["user_hash"] = hash_user(user_id, self.salt) if user_id else None
        rec["interaction_id"] = it.interaction_id or uuid.uuid4().hex
        rec["created_at"] = now.isoformat()
        rec["workspace"] = self.workspace
        rec["text_kept"] = keep_text
        redactions: dict[str, int] = {}
        rec["num_steps"] = len(it.steps)
        for name in TEXT_FIELDS:
            value = rec[name]
            if not keep_text:
                rec[name] = [] if name == "steps" else None
                continue
            if isinstance(value, list):
                cleaned = []
                for s in value:
                    c, n = scrub_pii(str(s))
                    cleaned.append(c)
                    for k, v in n.items():
                        redactions[k] = redactions.get(k, 0) + v
                rec[name] = cleaned
            elif value is not None:
                rec[name], n = scrub_pii(str(value))
                for k, v in n.items():
                    redactions[k] = redactions.get(k, 0) + v
        rec["pii_redactions"] = redactions
        return rec

    def append(self, it: Interaction, now: datetime | None = None) -> dict[str, Any]:
        """Write one interaction; returns the stored record."""
        rec = self.to_record(it, now)
        line = (json.dumps(rec, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        path = self.path_for(rec["created_at"][:10])
        with self._locked():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return rec

    def files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.glob("*.jsonl") if not is_temp_file(p))

    def read(self, date: str | None = None) -> list[dict[str, Any]]:
        """Every complete record (of one date, or all dates in order)."""
        paths = [self.path_for(date)] if date else self.files()
        return [rec for p in paths if p.exists() for rec in read_jsonl(p)]

    def delete_user(self, user_id: str) -> int:
        """Remove every record of one user from all files (temp file + rename each); returns the count removed.

        The ids of the removed records (random, not the user's) go to the deletion ledger
        (`deletions/ledger.jsonl`), so derived data (dataset versions built from the log) can be rebuilt
        without them; see `read_deletions`.
        """
        target = hash_user(user_id, self.salt)
        removed = 0
        removed_ids: list[str] = []
        with self._locked():
            for path in self.files():
                lines = path.read_bytes().splitlines(keepends=True)
                kept = []
                for raw in lines:
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        kept.append(raw)  # not ours to judge: keep unparsable bytes as they were
                        continue
                    if isinstance(rec, dict) and rec.get("user_hash") == target:
                        removed += 1
                        removed_ids.append(str(rec.get("interaction_id") or ""))
                    else:
                        kept.append(raw)
                if len(kept) != len(lines):
                    with atomic_path(path) as tmp:
                        Path(tmp).write_bytes(b"".join(kept))
                        os.chmod(tmp, 0o600)
            if removed:
                now = datetime.now(UTC).isoformat()
                entry = {"deleted_at": now, "removed": removed, "interaction_ids": removed_ids}
                ledger = self.directory / DELETIONS
                ledger.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
                finally:
                    os.close(fd)
                notify_commit(ledger)  # object storage: the pipeline's deletion sensor reads the ledger
        return removed


DELETIONS = "deletions/ledger.jsonl"  # one line per deletion: time, count, the removed records' interaction ids


def read_deletions(directory: str | Path) -> list[dict[str, Any]]:
    """The deletion ledger of an interaction directory, oldest first ([] when nothing was ever deleted)."""
    path = Path(directory) / DELETIONS
    return read_jsonl(path) if path.exists() else []


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of one interaction file; a line that does not parse (a torn write) is skipped."""
    out = []
    for raw in Path(path).read_bytes().splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
