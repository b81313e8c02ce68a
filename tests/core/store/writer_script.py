"""A latent writer that never stops, killed by test_kill.py at a random moment.

    python writer_script.py ROOT READY_FILE append      # one shard per write(append=True), forever
    python writer_script.py ROOT READY_FILE overwrite   # whole sets of SET_SHARDS shards, overwrite=True, forever

Every tensor is a pure function of (key, sequence, row, column), so the test can check what it reads
against what the writer meant to write. `key` is the shard index (append) or 1000 * generation +
shard index (overwrite).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rjepa_core.schemas import LatentSequence

HIDDEN, STEPS, PER_SHARD, SET_SHARDS = 2048, 16, 32, 4  # 2 MiB of float16 per shard
LLM = "kill"


def expected_H(key: int, j: int) -> np.ndarray:
    """Integers below 2048 are exact in float16."""
    rows = np.arange(STEPS)[:, None] * 3 + np.arange(HIDDEN)[None, :]  # (STEPS, HIDDEN)
    return ((rows + key * 31 + j * 7) % 2048).astype(np.float16)


def sequences(key: int) -> list[LatentSequence]:
    return [
        LatentSequence(
            cot_id=f"k{key}-{j}",
            problem_id=f"p{key}",
            llm_tag=LLM,
            layer_idx=-2,
            hidden_size=HIDDEN,
            num_steps=STEPS,
            step_spans=[(i, i + 1) for i in range(STEPS)],
            token_ids=list(range(STEPS)),
            H=expected_H(key, j),
        )
        for j in range(PER_SHARD)
    ]


def main(root: str, ready: str, mode: str) -> None:
    from rjepa_core.store.latents import LatentStore
    from rjepa_core.store.layout import StorageLayout

    store = LatentStore(StorageLayout(root))
    Path(ready).touch()
    if mode == "append":
        while True:  # shard k holds key k: commits are in order, so the next key is the shard count
            key = len(list(store.iter_shards(LLM, "v_append")))
            store.write(LLM, "v_append", sequences(key), shard_size=PER_SHARD, append=True)
    generation = 0
    while True:
        generation += 1
        seqs = [s for k in range(SET_SHARDS) for s in sequences(1000 * generation + k)]
        store.write(LLM, "v_overwrite", seqs, shard_size=PER_SHARD, overwrite=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
