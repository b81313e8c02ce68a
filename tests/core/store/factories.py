"""Deterministic latent sequences for the store tests."""

from __future__ import annotations

import numpy as np

from rjepa_core.schemas import LatentSequence


def make_seqs(n: int, hidden: int = 8, tag: str = "tiny", seed: int = 0) -> list[LatentSequence]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        steps = i % 4 + 1
        out.append(
            LatentSequence(
                cot_id=f"c{seed}-{i}",
                problem_id=f"p{i // 2}",
                llm_tag=tag,
                layer_idx=-2,
                hidden_size=hidden,
                num_steps=steps,
                step_spans=[(3 * k, 3 * k + 3) for k in range(steps)],
                token_ids=[int(t) for t in rng.integers(0, 50_000, 3 * steps + 5)],
                domain="math" if i % 3 else "code",
                is_valid=bool(i % 2),
                split=("train", "val", "test")[i % 3],
                origin="gold" if i % 5 == 0 else f"student:{tag}",
                # values beyond float16's integer range and tiny ones: a float32 round trip would change them
                H=(rng.standard_normal((steps, hidden)) * 1000).astype(np.float16),
            )
        )
    return out
