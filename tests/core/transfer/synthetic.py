"""Two synthetic students of different widths reading the same chains, and a tiny reference R-JEPA.

Both students embed one shared low-rank dynamics z_{t+1} = A z_t (a rotation) with their own linear map,
mean and outlier dimension, plus noise: what one predicts is predictable in the other, through a map that
is not orthogonal. Every fourth chain is shuffled (invalid). The same cot_ids in both latent sets make them
paired, as gold chains are between two real students.

    >>> sets = two_students(200, widths={"ref": 16, "new": 24})
    >>> sets["new"][0].H.shape[1], sets["ref"][0].cot_id == sets["new"][0].cot_id
    (24, True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rjepa_core.schemas import LatentSequence

RANK = 8


def _rotation() -> np.ndarray:
    rng = np.random.default_rng(1234)
    q, _ = np.linalg.qr(rng.normal(size=(RANK, RANK)))
    A = np.zeros((RANK, RANK))
    for i, a in enumerate(rng.uniform(0.3, 0.8, size=RANK // 2)):
        A[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return q @ A @ q.T


def _embedding(width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(RANK, width)) / np.sqrt(RANK)
    W[:, 0] *= 20.0  # an outlier dimension, as real student latents have
    return W, 3.0 * rng.normal(size=width)


def two_students(n: int, widths: dict[str, int], seed: int = 0) -> dict[str, list[LatentSequence]]:
    """{llm_tag: sequences} with the same chains (cot_id, split, validity) in every student."""
    A = _rotation()
    maps = {tag: _embedding(w, 100 + i) for i, (tag, w) in enumerate(sorted(widths.items()))}
    rng = np.random.default_rng(seed)
    out: dict[str, list[LatentSequence]] = {tag: [] for tag in widths}
    for i in range(n):
        steps = int(rng.integers(4, 8))
        z, Z = rng.normal(size=RANK), []
        for _ in range(steps):
            Z.append(z)
            z = A @ z
        Z = np.stack(Z)  # (steps, RANK)
        valid = i % 4 != 0
        if not valid:
            Z = Z[np.roll(np.arange(steps), 2)]
        split = "train" if i < 0.7 * n else ("val" if i < 0.85 * n else "test")
        for tag, (W, mean) in maps.items():
            H = (Z @ W + mean + 0.05 * rng.normal(size=(steps, W.shape[1]))).astype(np.float16)
            out[tag].append(
                LatentSequence(
                    cot_id=f"c{i}",
                    problem_id=f"p{i}",
                    llm_tag=tag,
                    layer_idx=-2,
                    hidden_size=W.shape[1],
                    num_steps=steps,
                    step_spans=[(j, j + 1) for j in range(steps)],
                    token_ids=list(range(steps)),
                    is_valid=valid,
                    split=split,
                    H=H,
                )
            )
    return out


def train_reference(seqs: list[LatentSequence], out: Path, steps: int = 300):
    """A tiny R-JEPA trained on `seqs` (the reference student), calibrated; returns the LoadedCheckpoint."""
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.pipeline import load_rjepa_config, train_jepa

    root = Path(__file__).resolve().parents[3]
    cfg = load_rjepa_config(root / "configs" / "rjepa" / "tiny.yaml", seqs[0].hidden_size).replace(
        optim={"total_steps": steps, "warmup_steps": 20}, train={"val_every": 100, "patience": 0}
    )
    result, _ = train_jepa(seqs, cfg, out, device="cpu")
    return load_checkpoint(result.checkpoint_dir)
