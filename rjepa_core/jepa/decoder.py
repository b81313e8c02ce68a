"""The latent decoder (SPEC F12): a small causal transformer that writes a step's text from its latent.

    >>> import numpy as np
    >>> pairs = [StepPair(np.random.randn(16).astype("float32"), [5, 6, 7]) for _ in range(8)]
    >>> dec = train_decoder(pairs[:6], pairs[6:], DecoderConfig(steps=20, d_model=32, n_layers=1))  # doctest: +SKIP
    >>> dec.decoder.generate_ids(np.stack([p.latent for p in pairs]))[0]                            # doctest: +SKIP
    [5, 6, 7]

The latent (a pooled step latent, or an R-JEPA prediction of one in the student's hidden space) is
layer-normalised and projected to `prefix_len` prefix vectors; the decoder then writes the step's
tokens after them, causally, and stops at its end-of-step token. Tokens are the **student's own
tokens** (the ones its tokenizer gave the step inside the chain, from the latents asset's
`token_ids`/`step_spans`), re-indexed to the ones seen in training (`DecoderVocab`): the student's
49k-token vocabulary would make the output layer a hundred times larger than the rest of the model,
and a token never seen in a training step cannot be learned anyway. Decoded ids map back to the
student's ids, and the student's tokenizer turns them into text.

Training adds Gaussian noise to the normalised latent (`latent_noise`), so that R-JEPA's predictions,
which sit near but not on the true latents, decode too. `decoder_metrics` gives held-out token
accuracy (teacher-forced), exact match of the decoded text and numeric accuracy (the decoded step
states the same numbers, in order, as the true one).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rjepa_core.io import replace_dir
from rjepa_core.segmentation import numbers_in

WEIGHTS = "decoder.safetensors"
META = "decoder.json"
FORMAT_VERSION = 1
PAD, BOS, EOS, UNK = 0, 1, 2, 3
N_SPECIAL = 4


@dataclass(frozen=True)
class DecoderConfig:
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    prefix_len: int = 4  # prefix vectors the latent is projected to
    max_tokens: int = 48  # step tokens kept for training; decoding stops there
    dropout: float = 0.1
    latent_noise: float = 0.1  # std of the Gaussian noise added to the normalised latent in training
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    batch_size: int = 64
    steps: int = 1500
    val_every: int = 100
    patience: int = 2  # validations without improvement before stopping
    min_token_count: int = 1  # tokens seen fewer times in training become UNK
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")
        for name in ("d_model", "n_layers", "n_heads", "prefix_len", "max_tokens", "batch_size", "steps", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"decoder config {name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown decoder config keys {sorted(unknown)}: use {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


@dataclass
class StepPair:
    latent: np.ndarray  # (width,) the step's latent
    token_ids: list[int]  # the student's tokens of the step's text
    problem_id: str = ""
    cot_id: str = ""
    step: int = 0


def step_pairs(seqs: Sequence[Any]) -> list[StepPair]:
    """(latent, student tokens) of every step of LatentSequences that carry their tensors."""
    out = []
    for s in seqs:
        if s.H is None:
            raise ValueError(f"sequence {s.cot_id} has no latents: read the latents store with_tensors=True")
        for j, (a, b) in enumerate(s.step_spans):
            latent = np.asarray(s.H[j], dtype=np.float32)
            out.append(StepPair(latent, list(s.token_ids[a:b]), s.problem_id, s.cot_id, j))
    return out


class DecoderVocab:
    """The student's token ids seen in training steps, re-indexed after the special tokens PAD/BOS/EOS/UNK."""

    def __init__(self, student_ids: Sequence[int]):
        self.student_ids = [int(i) for i in student_ids]
        self._local = {sid: N_SPECIAL + k for k, sid in enumerate(self.student_ids)}

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[int]], min_count: int = 1) -> DecoderVocab:
        counts: dict[int, int] = {}
        for toks in token_lists:
            for t in toks:
                counts[int(t)] = counts.get(int(t), 0) + 1
        return cls(sorted(t for t, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        return N_SPECIAL + len(self.student_ids)

    def encode(self, ids: Sequence[int]) -> list[int]:
        return [self._local.get(int(i), UNK) for i in ids]

    def decode(self, local: Sequence[int]) -> list[int]:
        """Student ids of local ids, up to the first EOS; PAD/BOS/UNK are dropped."""
        out = []
        for t in local:
            if t == EOS:
                break
            if t >= N_SPECIAL:
                out.append(self.student_ids[t - N_SPECIAL])
        return out


class LatentDecoder(nn.Module):
    def __init__(self, latent_dim: int, vocab_size: int, cfg: DecoderConfig):
        super().__init__()
        self.cfg, self.latent_dim, self.vocab_size = cfg, latent_dim, vocab_size
        d = cfg.d_model
        self.norm_in = nn.LayerNorm(latent_dim)
        self.prefix = nn.Linear(latent_dim, cfg.prefix_len * d)
        self.tok = nn.Embedding(vocab_size, d)
        self.pos = nn.Parameter(torch.randn(cfg.prefix_len + cfg.max_tokens + 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, 4 * d, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size)

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return self.norm_in(z)

    def forward(self, z: torch.Tensor, tokens: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Logits (B, T, V) for the token after each of `tokens` (B, T), BOS first, given latents z (B, Dz)."""
        B, T = tokens.shape
        u = self.normalise(z)
        if noise > 0:
            u = u + noise * torch.randn_like(u)
        P = self.prefix(u).view(B, self.cfg.prefix_len, self.cfg.d_model)
        x = torch.cat([P, self.tok(tokens)], dim=1)
        L = x.shape[1]
        x = x + self.pos[:L]
        causal = torch.triu(torch.full((L, L), float("-inf"), device=x.device), diagonal=1)
        h = self.blocks(x, mask=causal, is_causal=True)
        return self.head(self.norm_out(h[:, self.cfg.prefix_len :]))

    @torch.no_grad()
    def generate_local(self, z: torch.Tensor, max_tokens: int | None = None) -> list[list[int]]:
        """Greedy local ids per latent (without BOS; up to EOS or max_tokens)."""
        self.eval()
        limit = min(max_tokens or self.cfg.max_tokens, self.cfg.max_tokens)
        B = z.shape[0]
        seq = torch.full((B, 1), BOS, dtype=torch.long, device=z.device)
        done = torch.zeros(B, dtype=torch.bool, device=z.device)
        for _ in range(limit):
            nxt = self(z, seq)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            done |= nxt == EOS
            if bool(done.all()):
                break
        return [[int(t) for t in row[1:] if t != PAD] for row in seq.cpu()]


@dataclass
class TrainedDecoder:
    decoder: LatentDecoder
    vocab: DecoderVocab
    meta: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def latent_dim(self) -> int:
        return self.decoder.latent_dim

    def _check(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float32)
        if Z.ndim == 1:
            Z = Z[None]
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim:
            raise ValueError(
                f"latents of shape {Z.shape} do not fit this decoder: it takes (n, {self.latent_dim}) latents "
                f"(llm {self.meta.get('llm_tag')!r}, {self.meta.get('pooling', 'mean')} pooling)"
            )
        if not np.isfinite(Z).all():
            raise ValueError("latents must be finite numbers (no NaN or Inf)")
        return Z

    def generate_ids(self, Z: np.ndarray, batch_size: int = 256, max_tokens: int | None = None) -> list[list[int]]:
        """The student's token ids of the decoded step, per latent (rows of Z); at most max_tokens each."""
        Z = self._check(Z)
        device = next(self.decoder.parameters()).device
        out: list[list[int]] = []
        for start in range(0, len(Z), batch_size):
            z = torch.from_numpy(Z[start : start + batch_size]).to(device)
            out += [self.vocab.decode(row) for row in self.decoder.generate_local(z, max_tokens)]
        return out

    def decode(self, Z: np.ndarray, tokenizer: Any, max_tokens: int | None = None) -> list[str]:
        """Decoded step texts (stripped), per latent."""
        ids = self.generate_ids(Z, max_tokens=max_tokens)
        return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]

    def save(self, path: str | Path, **meta: Any) -> Path:
        """Write the decoder folder atomically (weights + decoder.json); replaces any previous one."""
        self.meta = {**self.meta, **meta}
        full = {
            "format_version": FORMAT_VERSION,
            "config": asdict(self.decoder.cfg),
            "latent_dim": self.latent_dim,
            "vocab_student_ids": self.vocab.student_ids,
            "history": self.history,
            "saved_at": time.time(),
            **self.meta,
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.decoder.state_dict().items()}

        def write(tmp: Path) -> None:
            save_file(tensors, str(tmp / WEIGHTS))
            (tmp / META).write_text(json.dumps(full, indent=2, sort_keys=True, default=float))

        return replace_dir(path, write)


def load_decoder(path: str | Path, device: str | torch.device = "cpu") -> TrainedDecoder:
    path = Path(path)
    if not (path / WEIGHTS).exists() or not (path / META).exists():
        raise FileNotFoundError(
            f"no latent decoder at {path} (expected {WEIGHTS} and {META}): materialize `latent_decoder` first"
        )
    meta = json.loads((path / META).read_text())
    cfg = DecoderConfig.from_dict(meta.pop("config"))
    vocab = DecoderVocab(meta.pop("vocab_student_ids"))
    history = meta.pop("history", [])
    dec = LatentDecoder(int(meta.pop("latent_dim")), len(vocab), cfg)
    dec.load_state_dict(load_file(str(path / WEIGHTS)), strict=True)
    return TrainedDecoder(dec.to(device).eval(), vocab, meta, history)


def _batch(pairs: Sequence[StepPair], vocab: DecoderVocab, max_tokens: int) -> tuple[torch.Tensor, ...]:
    """(latents (B, Dz), inputs (B, T) BOS + tokens, targets (B, T) tokens + EOS, -100 where padded)."""
    seqs = [vocab.encode(p.token_ids[:max_tokens]) for p in pairs]
    T = max(len(s) for s in seqs) + 1
    inp = torch.full((len(seqs), T), PAD, dtype=torch.long)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        inp[i, : len(s) + 1] = torch.tensor([BOS, *s])
        tgt[i, : len(s) + 1] = torch.tensor([*s, EOS])
    z = torch.from_numpy(np.stack([p.latent for p in pairs]).astype(np.float32))
    return z, inp, tgt


@torch.no_grad()
def token_accuracy(dec: LatentDecoder, vocab: DecoderVocab, pairs: Sequence[StepPair], batch_size: int = 256):
    """(teacher-forced next-token accuracy, mean cross-entropy) over the pairs' tokens and their EOS."""
    dec.eval()
    right = total = 0
    loss_sum = 0.0
    for start in range(0, len(pairs), batch_size):
        z, inp, tgt = _batch(pairs[start : start + batch_size], vocab, dec.cfg.max_tokens)
        logits = dec(z, inp)
        mask = tgt != -100
        right += int(((logits.argmax(-1) == tgt) & mask).sum())
        total += int(mask.sum())
        loss_sum += float(nn.functional.cross_entropy(logits[mask], tgt[mask], reduction="sum"))
    return right / max(total, 1), loss_sum / max(total, 1)


def train_decoder(
    train: Sequence[StepPair],
    val: Sequence[StepPair],
    cfg: DecoderConfig = DecoderConfig(),
    *,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> TrainedDecoder:
    """Train on `train`, keep the weights of the best validation loss (early stopping on `val`)."""
    if not train:
        raise ValueError("no training pairs: the latents asset has no train-split steps")
    widths = {p.latent.shape[-1] for p in [*train, *val]}
    if len(widths) != 1:
        raise ValueError(f"latents of several widths {sorted(widths)}: decode one student's latents at a time")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vocab = DecoderVocab.build([p.token_ids[: cfg.max_tokens] for p in train], cfg.min_token_count)
    dec = LatentDecoder(widths.pop(), len(vocab), cfg).to(device)
    opt = torch.optim.AdamW(dec.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10 %
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    held = list(val) or list(train[: max(1, len(train) // 10)])
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    stale, started = 0, time.monotonic()
    for step in range(cfg.steps):
        dec.train()
        idx = rng.choice(len(train), size=min(cfg.batch_size, len(train)), replace=len(train) < cfg.batch_size)
        z, inp, tgt = _batch([train[i] for i in idx], vocab, cfg.max_tokens)
        logits = dec(z.to(device), inp.to(device), noise=cfg.latent_noise)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.to(device).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps:
            acc, val_loss = token_accuracy(dec, vocab, held)
            history.append({"step": step + 1, "train_loss": loss.item(), "val_loss": val_loss, "val_token_acc": acc})
            if log:
                log(f"decoder step {step + 1}: train loss {loss.item():.3f}, val loss {val_loss:.3f}, acc {acc:.3f}")
            if best is None or val_loss < best[0]:
                best, stale = (val_loss, {k: v.detach().clone() for k, v in dec.state_dict().items()}), 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    dec.load_state_dict(best[1])
    dec.eval()
    meta = {
        "num_train_pairs": len(train),
        "num_val_pairs": len(val),
        "vocab_size": len(vocab),
        "best_val_loss": best[0],
        "train_seconds": round(time.monotonic() - started, 1),
        "params": sum(p.numel() for p in dec.parameters()),
    }
    return TrainedDecoder(dec, vocab, meta, history)


def same_numbers(decoded: str, true: str) -> bool:
    """The decoded text states the same numbers, in the same order, as the true one."""
    return numbers_in(decoded) == numbers_in(true)


def decoder_metrics(trained: TrainedDecoder, pairs: Sequence[StepPair], tokenizer: Any) -> dict[str, Any]:
    """Held-out token accuracy, exact match of the decoded text and numeric accuracy, with a few examples."""
    if not pairs:
        return {"n": 0}
    acc, loss = token_accuracy(trained.decoder, trained.vocab, pairs)
    decoded = trained.decode(np.stack([p.latent for p in pairs]), tokenizer)
    true = [tokenizer.decode(p.token_ids, skip_special_tokens=True).strip() for p in pairs]
    exact = [d == t for d, t in zip(decoded, true, strict=True)]
    numeric = [same_numbers(d, t) for d, t in zip(decoded, true, strict=True)]
    return {
        "n": len(pairs),
        "token_accuracy": acc,
        "cross_entropy": loss,
        "exact_match": float(np.mean(exact)),
        "numeric_accuracy": float(np.mean(numeric)),
        "examples": [{"true": t, "decoded": d} for t, d in list(zip(true, decoded, strict=True))[:8]],
    }
