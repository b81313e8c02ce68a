"""Paired-latent maps (SPEC F13 baselines): the same chains through two students, a linear map between them.

    >>> X, Y, row_ids = pair_latents(new_seqs, ref_seqs)     # same cot_id and step count in both latent sets
    >>> pro, rid = fit_procrustes(X, Y), fit_ridge(X, Y)       # semi-orthogonal (SVD) / ridge regression
    >>> map_r2(pro, X_held, Y_held), map_r2(pad_map(X.shape[1], Y.shape[1]), X_held, Y_held)

Gold and teacher chains of a dataset version carry the same cot_id for every student, so the stored latents
pair step by step; `paired_from_students` makes pairs from any ChainInput list through two loaded students.
A map is x_ref = W (x - c_in) + c_ref (`LinearMap`), turned into a `LatentAdapter` by `.adapter()`.
For different widths Procrustes takes the semi-orthogonal U Vᵀ of the SVD of Xcᵀ Yc (the map that
maximises tr(Wᵀ Xcᵀ Yc)), scaled by least squares; `pad_map` (pad / truncate, the identity at equal
widths) and `random_map` (a random semi-orthogonal one) are the do-nothing baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rjepa_core.transfer.adapter import LatentAdapter, semi_orthogonal


def rows_of(seqs: Sequence[Any]) -> np.ndarray:
    """Every step latent (and question latent) of the sequences as rows (N, width) float32."""
    rows = [np.asarray(s.H, dtype=np.float32) for s in seqs]
    rows += [np.asarray(s.Q, dtype=np.float32)[None] for s in seqs if getattr(s, "Q", None) is not None]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


def pair_latents(new_seqs: Sequence[Any], ref_seqs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step-by-step pairs of the chains both students encoded: X new (N, in), Y reference (N, ref), and the
    cot_id of each row (N,)."""
    ref = {s.cot_id: s for s in ref_seqs}
    xs, ys, ids = [], [], []
    for s in new_seqs:
        r = ref.get(s.cot_id)
        if r is None or r.num_steps != s.num_steps:
            continue
        xs.append(np.asarray(s.H, np.float32))
        ys.append(np.asarray(r.H, np.float32))
        ids += [s.cot_id] * s.num_steps
        if s.Q is not None and r.Q is not None:
            xs.append(np.asarray(s.Q, np.float32)[None])
            ys.append(np.asarray(r.Q, np.float32)[None])
            ids.append(s.cot_id)
    if not xs:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), np.array([], dtype=object)
    return np.concatenate(xs), np.concatenate(ys), np.asarray(ids, dtype=object)


def paired_from_students(new_student: Any, ref_student: Any, inputs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """The same ChainInputs teacher-forced through both students (`StudentLLM.extract`): (X (N, in), Y (N, ref))."""
    new, ref = new_student.extract(list(inputs)), ref_student.extract(list(inputs))
    xs, ys = [], []
    for a, b in zip(new, ref, strict=True):
        if a.H.shape[0] == b.H.shape[0]:  # both segment the same step texts: one row per step in each
            xs.append(np.asarray(a.H, np.float32))
            ys.append(np.asarray(b.H, np.float32))
    return np.concatenate(xs), np.concatenate(ys)


@dataclass
class LinearMap:
    W: np.ndarray  # (ref, in): x_ref = W (x - c_in) + c_ref
    c_in: np.ndarray  # (in,)
    c_ref: np.ndarray  # (ref,)
    method: str

    def apply(self, X: np.ndarray) -> np.ndarray:
        return (X - self.c_in) @ self.W.T + self.c_ref  # (N, ref)

    def adapter(self) -> LatentAdapter:
        ad = LatentAdapter(self.W.shape[1], self.W.shape[0])
        return ad.set_maps(self.W).set_centres(self.c_in, self.c_ref)


def variance_scale(X: np.ndarray, Y: np.ndarray) -> float:
    """s0 = sqrt(total variance of Y / total variance of X): the scale of a variance-matching orthogonal map."""
    vx, vy = float(X.var(0).sum()), float(Y.var(0).sum())
    return math.sqrt(vy / vx) if vx > 0 and vy > 0 else 1.0


def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float = 1e-2) -> LinearMap:
    cx, cy = X.mean(0), Y.mean(0)
    Xc, Yc = (X - cx).astype(np.float64), (Y - cy).astype(np.float64)
    lam = alpha * float((Xc**2).sum()) / Xc.shape[1]
    W = np.linalg.solve(Xc.T @ Xc + lam * np.eye(Xc.shape[1]), Xc.T @ Yc).T  # (ref, in)
    return LinearMap(W.astype(np.float32), cx, cy, "ridge")


def fit_procrustes(X: np.ndarray, Y: np.ndarray) -> LinearMap:
    """Scaled orthogonal Procrustes; for different widths the semi-orthogonal U Vᵀ of the SVD of Xcᵀ Yc."""
    cx, cy = X.mean(0), Y.mean(0)
    Xc, Yc = (X - cx).astype(np.float64), (Y - cy).astype(np.float64)
    U, S, Vt = np.linalg.svd(Xc.T @ Yc, full_matrices=False)  # (in, k), (k,), (k, ref)
    R = U @ Vt  # (in, ref) semi-orthogonal
    scale = float(S.sum() / max(((Xc @ R) ** 2).sum(), 1e-12))  # least squares for this R (what R keeps of X)
    return LinearMap((scale * R).T.astype(np.float32), cx, cy, "procrustes")


def pad_map(
    in_width: int, ref_width: int, c_in: np.ndarray | None = None, c_ref: np.ndarray | None = None
) -> LinearMap:
    """The identity (equal widths) or pad/truncate map, centres matched when given: the do-nothing baseline."""
    c_in = np.zeros(in_width, np.float32) if c_in is None else c_in
    c_ref = np.zeros(ref_width, np.float32) if c_ref is None else c_ref
    return LinearMap(np.eye(ref_width, in_width, dtype=np.float32), c_in, c_ref, "pad")


def random_map(X: np.ndarray, Y: np.ndarray, seed: int) -> LinearMap:
    """A random semi-orthogonal map, variance-matched and centred: what the F13 fit starts from without pairs."""
    W = semi_orthogonal(Y.shape[1], X.shape[1], seed).numpy() * variance_scale(X, Y)
    return LinearMap(W.astype(np.float32), X.mean(0), Y.mean(0), "random")


def map_r2(m: LinearMap, X: np.ndarray, Y: np.ndarray) -> float:
    """Held-out R² of the map on pairs: 1 - SSE / SST (1 = perfect, 0 = the mean, < 0 worse)."""
    sse = float(((m.apply(X) - Y) ** 2).sum())
    sst = float(((Y - Y.mean(0)) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")
