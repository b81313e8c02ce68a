"""Fitting a latent adapter (SPEC F13): paired-latent baselines and the JEPA fit with R-JEPA frozen.

    >>> adapter, report = fit_adapter(ref_checkpoint, new_seqs, ref_seqs, AdapterFitConfig(method="jepa"))
    >>> report["held_out"]["jepa"]["ratio"] < report["held_out"]["pad"]["ratio"]

Two ways to fit W_in (new width -> reference width):

- paired (`rjepa_core.transfer.paired`): the chains both students encoded (gold and teacher chains have
  the same cot_id for every student), ridge regression and orthogonal Procrustes on their step pairs.
- jepa (F13): the reference R-JEPA frozen, only W_in trained by the JEPA objective on a calibration set
  (`calibration_fraction` of the new student's validated train chains), starting from Procrustes when
  pairs exist (whichever does best on held-out chains; else a random semi-orthogonal map); W_out is then
  fitted by least squares from the reference's `to_hidden` outputs to the new student's latents.

Collapse guard and measure. The targets come from the frozen target encoder through the same W_in, so a
W_in that made every latent alike would make every step predictable. The adapter's centres are fixed
buffers (a bias cannot take over), W_in's Gram matrix is anchored to the starting map's by a penalty
(it may rotate, but its scale cannot shrink nor its rank drop), and early stopping watches the held-out
*ratio*: the JEPA-loss over the loss of the trivial predictor (the mean target at the same step position
and domain, all the model knows besides the chain itself). A collapsed map leaves targets that depend on
position and domain only: it lowers the loss, but the trivial predictor's loss falls faster and the ratio
rises; `std_targets` (per-dimension spread of the held-out
targets) is reported beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from rjepa_core.jepa.calibration import fit_calibration
from rjepa_core.jepa.checkpoint import LoadedCheckpoint
from rjepa_core.jepa.collate import Chain, Collator, as_chain
from rjepa_core.jepa.losses import token_loss
from rjepa_core.jepa.masks import make_masker
from rjepa_core.jepa.model import gather_steps
from rjepa_core.jepa.scoring import JEPAScorer
from rjepa_core.transfer.adapter import AdaptedRJEPA, LatentAdapter
from rjepa_core.transfer.paired import (
    LinearMap,
    fit_procrustes,
    fit_ridge,
    map_r2,
    pad_map,
    pair_latents,
    random_map,
    rows_of,
)

METHODS = ("jepa", "procrustes", "ridge")
HELD_OUT_SEED = 1_000_003  # held-out masks come from their own seed, fixed across fits and runs


@dataclass
class AdapterFitConfig:
    method: str = "jepa"  # jepa (F13: R-JEPA frozen, W_in trained) | procrustes | ridge (paired baselines)
    calibration_fraction: float = 0.1  # share of the new student's validated train chains the JEPA fit sees
    min_calibration: int = 16  # ... but at least this many chains (tiny dataset versions)
    steps: int = 300  # optimizer steps of the JEPA fit
    lr: float = 1e-3  # AdamW learning rate of W_in
    batch_size: int = 32  # chains per step
    eval_every: int = 25  # steps between held-out evaluations (early stopping)
    patience: int = 4  # evaluations without a better held-out ratio before stopping
    anchor_weight: float = 1.0  # weight of the penalty holding W_in's singular values at the starting map's
    ridge_alpha: float = 1e-2  # ridge penalty, relative to the mean input variance
    fit_out: bool = True  # W_out by least squares on the reference's to_hidden outputs (False: pinv(W_in))
    seed: int = 0  # init of the random maps, data order and masks

    def validate(self) -> AdapterFitConfig:
        if self.method not in METHODS:
            raise ValueError(f"adapter fit method {self.method!r}: use one of {METHODS}")
        if not 0 < self.calibration_fraction <= 1:
            raise ValueError(f"calibration_fraction must be in (0, 1], got {self.calibration_fraction}")
        for name in ("steps", "batch_size", "eval_every", "min_calibration"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self


# ---- the JEPA objective through an adapter -------------------------------------------------------
def jepa_chains(seqs: Sequence[Any], ck: LoadedCheckpoint) -> list[Chain]:
    """Validated chains long enough to mask, cut to the model's max_steps (a question latent counts as context)."""
    m = ck.config.model
    masker = make_masker(ck.config.mask)
    out = []
    for s in seqs:
        c = as_chain(s)
        q = c.q if m.question_token else None
        if c.is_valid and c.H.shape[0] >= masker.length_needed(int(q is not None)):
            out.append(Chain(np.asarray(c.H[: m.max_steps], np.float32), c.domain, True, q))
    return out


def _collator(ck: LoadedCheckpoint, seed: int) -> Collator:
    m = ck.config.model
    return Collator(make_masker(ck.config.mask), seed, m.domains, m.max_steps, m.question_token)


def _masked(model: AdaptedRJEPA, b) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(predictions, targets, hidden-space inputs) of the masked steps of a batch: (N, D), (N, D), (N, in)."""
    z = model.encode_targets(b.H, b.valid, b.domain_ids, None, b.Q, b.q_valid)  # (B, S, D) no grad
    tgt = gather_steps(z, b.tgt_idx)  # (B, T, D)
    pred = model.predict(b.H, b.valid, b.domain_ids, b.ctx_valid, b.tgt_idx, b.tgt_valid, None, b.Q, b.q_valid)
    w = b.tgt_valid & b.is_valid[:, None]  # (B, T)
    return pred[w], tgt[w], gather_steps(b.H, b.tgt_idx)[w]


@torch.no_grad()
def jepa_held_out(model: AdaptedRJEPA, chains: Sequence[Chain], ck: LoadedCheckpoint, batch: int = 64) -> dict:
    """Held-out JEPA-loss through the adapter, the trivial predictor's loss, their ratio and the target spread."""
    model.eval()
    col = _collator(ck, ck.config.mask.seed + HELD_OUT_SEED)
    preds, tgts, slots = [], [], []
    for k, i in enumerate(range(0, len(chains), batch)):
        b = col(chains[i : i + batch], step=k)
        p, t, _ = _masked(model, b)
        w = b.tgt_valid & b.is_valid[:, None]  # (B, T)
        slot = b.tgt_idx * len(ck.config.model.domains) + b.domain_ids[:, None]  # (B, T): (step index, domain)
        preds.append(p.float())
        tgts.append(t.float())
        slots.append(slot[w])
    if not preds:
        nan = float("nan")
        return {"n_targets": 0, "loss": nan, "trivial": nan, "ratio": nan, "std_targets": 0.0}
    P, T, S = torch.cat(preds), torch.cat(tgts), torch.cat(slots)  # (N, D), (N, D), (N,)
    kind = ck.config.loss.kind
    loss = float(token_loss(P, T, kind).mean())
    # the trivial predictor knows what the model knows besides the chain: the step's position and domain
    _, inv = torch.unique(S, return_inverse=True)  # (N,)
    means = torch.zeros(int(inv.max()) + 1, T.shape[1]).index_add_(0, inv, T)  # (slots, D)
    means /= torch.bincount(inv).clamp(min=1)[:, None].float()
    trivial = float(token_loss(means[inv], T, kind).mean())
    return {
        "n_targets": int(T.shape[0]),
        "loss": loss,
        "trivial": trivial,
        "ratio": loss / trivial if trivial > 0 else float("inf"),
        "std_targets": float(T.std(0).mean()) if T.shape[0] > 1 else 0.0,
    }


def gram_anchor(W: torch.Tensor, G0: torch.Tensor) -> torch.Tensor:
    """||G - G0||² / ||G0||² with G the smaller Gram matrix of W (ref, in) and G0 the starting map's: W may
    rotate, but its singular values (its scale and its rank) stay where the fit started."""
    G = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W  # (k, k)
    return ((G - G0) ** 2).sum() / (G0**2).sum().clamp(min=1e-12)


def _gram(W: torch.Tensor) -> torch.Tensor:
    return (W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W).detach().clone()


def fit_jepa(
    ck: LoadedCheckpoint,
    adapter: LatentAdapter,
    calib: Sequence[Chain],
    held: Sequence[Chain],
    cfg: AdapterFitConfig,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, float]]:
    """Train W_in in place with the reference R-JEPA frozen; keeps the best held-out ratio; returns the curve."""
    flags = [p.requires_grad for p in ck.model.parameters()]
    for p in ck.model.parameters():
        p.requires_grad_(False)
    try:
        return _fit_jepa(ck, adapter, calib, held, cfg, log)
    finally:
        for p, flag in zip(ck.model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _fit_jepa(ck, adapter, calib, held, cfg, log) -> list[dict[str, float]]:
    model = AdaptedRJEPA(ck.model, adapter)
    params = [adapter.W_in.weight]
    adapter.W_out.weight.requires_grad_(False)
    G0 = _gram(adapter.W_in.weight)  # the starting map's spectrum: the anchor against collapse
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    col = _collator(ck, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    kind = ck.config.loss.kind
    first = jepa_held_out(model, held, ck)
    best, best_w, bad = first["ratio"], adapter.W_in.weight.detach().clone(), 0
    history = [{"step": 0, "kind": "val", **first}]
    for step in range(1, cfg.steps + 1):
        model.train()
        idx = rng.choice(len(calib), size=min(cfg.batch_size, len(calib)), replace=False)
        pred, tgt, _ = _masked(model, col([calib[i] for i in idx], step=step))
        jepa = token_loss(pred.float(), tgt.float(), kind).mean()
        anchor = gram_anchor(adapter.W_in.weight, G0)
        loss = jepa + cfg.anchor_weight * anchor
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append({"step": step, "kind": "train", "loss": float(jepa.detach()), "anchor": float(anchor.detach())})
        if step % cfg.eval_every == 0 or step == cfg.steps:
            ev = jepa_held_out(model, held, ck)
            history.append({"step": step, "kind": "val", **ev})
            if log:
                log(f"adapter fit step {step}: held-out ratio {ev['ratio']:.4f} (loss {ev['loss']:.4f})")
            if ev["ratio"] < best:
                best, best_w, bad = ev["ratio"], adapter.W_in.weight.detach().clone(), 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    with torch.no_grad():
        adapter.W_in.weight.copy_(best_w)
    adapter.W_in.weight.requires_grad_(False)
    return history


@torch.no_grad()
def fit_w_out(ck: LoadedCheckpoint, adapter: LatentAdapter, chains: Sequence[Chain], alpha: float, seed: int) -> None:
    """W_out by ridge from the reference's to_hidden outputs of masked steps to the new student's latents."""
    model = AdaptedRJEPA(ck.model, adapter).eval()
    col = _collator(ck, seed)
    ys, xs = [], []
    for k, i in enumerate(range(0, len(chains), 64)):
        pred, _, x = _masked(model, col(list(chains[i : i + 64]), step=k))
        ys.append(ck.model.to_hidden(pred).float().numpy() - adapter.c_ref.numpy())
        xs.append(x.float().numpy() - adapter.c_in.numpy())
    Yh, X = np.concatenate(ys).astype(np.float64), np.concatenate(xs).astype(np.float64)  # (N, ref), (N, in)
    lam = alpha * float((Yh**2).sum()) / Yh.shape[1]
    W = np.linalg.solve(Yh.T @ Yh + lam * np.eye(Yh.shape[1]), Yh.T @ X).T  # (in, ref)
    adapter.W_out.weight.copy_(torch.as_tensor(W, dtype=torch.float32))


@torch.no_grad()
def hidden_r2(ck: LoadedCheckpoint, adapter: LatentAdapter, chains: Sequence[Chain]) -> float:
    """Held-out R² of the adapted to_hidden predictions of masked steps against the new student's latents."""
    model = AdaptedRJEPA(ck.model, adapter).eval()
    col = _collator(ck, ck.config.mask.seed + HELD_OUT_SEED)
    ps, xs = [], []
    for k, i in enumerate(range(0, len(chains), 64)):
        pred, _, x = _masked(model, col(list(chains[i : i + 64]), step=k))
        ps.append(model.to_hidden(pred).float().numpy())
        xs.append(x.float().numpy())
    if not xs:
        return float("nan")
    P, X = np.concatenate(ps), np.concatenate(xs)
    sst = float(((X - X.mean(0)) ** 2).sum())
    return 1.0 - float(((P - X) ** 2).sum()) / sst if sst > 0 else float("nan")


# ---- the whole fit, as the asset and the replay bench run it --------------------------------------
def calibration_split(seqs: Sequence[Any], cfg: AdapterFitConfig) -> tuple[list[Any], list[Any]]:
    """(calibration set, held-out set): a seeded `calibration_fraction` of the validated train chains, and
    the validated val chains (a slice of train when there are none)."""
    train = [s for s in seqs if s.is_valid and s.split == "train"]
    held = [s for s in seqs if s.is_valid and s.split == "val"]
    order = np.random.default_rng(cfg.seed).permutation(len(train))
    n = min(len(train), max(cfg.min_calibration, math.ceil(cfg.calibration_fraction * len(train))))
    calib = [train[i] for i in order[:n]]
    if not held:
        held = [train[i] for i in order[n:]] or calib
    return calib, held


def fit_adapter(
    ck: LoadedCheckpoint,
    new_seqs: Sequence[Any],
    ref_seqs: Sequence[Any],
    cfg: AdapterFitConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[LatentAdapter, dict[str, Any]]:
    """Fit the adapter from the new student's latents into the checkpoint's space; returns (adapter, report).

    ref_seqs: the reference student's latents of the same dataset version (their mean and variance set the
    map's centre and scale; the chains both encoded give the paired baselines). The report holds every
    candidate map's held-out numbers: pad (identity / pad-truncate), random, procrustes, ridge, jepa.
    """
    cfg = (cfg or AdapterFitConfig()).validate()
    tic = time.perf_counter()
    ref_width, in_width = ck.config.model.hidden_size, int(np.asarray(new_seqs[0].H).shape[1])
    X_all, Y_all = rows_of(new_seqs), rows_of(ref_seqs)
    if Y_all.shape[1] != ref_width:
        raise ValueError(
            f"the reference latents have width {Y_all.shape[1]} but the reference checkpoint reads {ref_width}: "
            "pass the latents of the llm the checkpoint was trained on"
        )
    calib_seqs, held_seqs = calibration_split(new_seqs, cfg)
    calib, held = jepa_chains(calib_seqs, ck), jepa_chains(held_seqs, ck)
    if not calib or not held:
        raise ValueError(
            f"too few validated chains to fit an adapter ({len(calib)} calibration, {len(held)} held out): "
            "materialize `latents` for a dataset version with validated train and val chains"
        )
    maps: dict[str, LinearMap] = {
        "pad": pad_map(in_width, ref_width),
        "random": random_map(X_all, Y_all, cfg.seed),
    }
    held_ids = {s.cot_id for s in held_seqs}
    X, Y, row_ids = pair_latents(new_seqs, ref_seqs)
    paired: dict[str, Any] = {"n_chains": len(set(row_ids))}
    if len(row_ids):
        in_held = np.isin(row_ids, list(held_ids))  # (N,) rows of held-out chains: never fitted on
        fit_rows = ~in_held if (~in_held).sum() >= 2 else np.ones_like(in_held)
        maps["procrustes"] = fit_procrustes(X[fit_rows], Y[fit_rows])
        maps["ridge"] = fit_ridge(X[fit_rows], Y[fit_rows], cfg.ridge_alpha)
        test_rows = in_held if in_held.sum() >= 2 else np.ones_like(in_held)
        paired.update(
            n_fit_rows=int(fit_rows.sum()),
            n_held_rows=int(test_rows.sum()),
            r2={k: map_r2(m, X[test_rows], Y[test_rows]) for k, m in maps.items()},
        )
    elif cfg.method in ("procrustes", "ridge"):
        raise ValueError(
            f"method {cfg.method!r} needs chains encoded by both students (the same cot_id in both latent sets): "
            "materialize `latents` of both llms on this dataset version, or use method 'jepa'"
        )
    held_out = {k: jepa_held_out(AdaptedRJEPA(ck.model, m.adapter()), held, ck) for k, m in maps.items()}
    history: list[dict[str, float]] = []
    if cfg.method == "jepa":
        # start from the best non-trivial map on held-out chains (Procrustes / ridge with pairs, else random)
        start = min((k for k in maps if k != "pad"), key=lambda k: held_out[k]["ratio"])
        adapter = maps[start].adapter()
        history = fit_jepa(ck, adapter, calib, held, cfg, log)
        held_out["jepa"] = jepa_held_out(AdaptedRJEPA(ck.model, adapter), held, ck)
    else:
        start, adapter = cfg.method, maps[cfg.method].adapter()
    r2_pinv = hidden_r2(ck, adapter, held)
    if cfg.fit_out:
        fit_w_out(ck, adapter, calib, cfg.ridge_alpha, cfg.seed)
    sv = torch.linalg.svdvals(adapter.W_in.weight.detach())
    # the 0-1 score scale of JEPA-losses through this adapter, on the llm's held-out validated chains (F10)
    scorer = JEPAScorer(AdaptedRJEPA(ck.model, adapter), ck.config.score, loss_kind=ck.config.loss.kind)
    calibration = fit_calibration(scorer, held_seqs)
    report = {
        "method": cfg.method,
        "started_from": start,
        "fit_config": asdict(cfg),
        "in_width": in_width,
        "ref_width": ref_width,
        "num_calibration_chains": len(calib),
        "num_held_out_chains": len(held),
        "num_train_chains": sum(s.is_valid and s.split == "train" for s in new_seqs),
        "held_out": held_out,  # per map: loss, trivial, ratio (lower = better), std_targets
        "paired": paired,
        "hidden_r2": {"pinv": r2_pinv, "fitted" if cfg.fit_out else "pinv_kept": hidden_r2(ck, adapter, held)},
        "w_in_singular_values": {"min": float(sv.min()), "max": float(sv.max())},
        "calibration": calibration.to_dict(),
        "fit_seconds": round(time.perf_counter() - tic, 2),
        "history": history,
    }
    return adapter.requires_grad_(False).eval(), report
