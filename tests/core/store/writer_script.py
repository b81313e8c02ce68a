"""Writes shards forever with deterministic content (killed by the test at a random moment)."""

import sys

import numpy as np

from rjepa_core.schemas import LatentSequence
from rjepa_core.store.latents import LatentStore
from rjepa_core.store.layout import StorageLayout

HIDDEN, STEPS, PER_SHARD = 576, 8, 64


def sequences(shard: int) -> list[LatentSequence]:
    out = []
    for j in range(PER_SHARD):
        H = np.full((STEPS, HIDDEN), (shard * PER_SHARD + j) % 1000, dtype=np.float16)
        out.append(
            LatentSequence(
                cot_id=f"s{shard}-{j}",
                problem_id=f"p{shard}",
                llm_tag="kill",
                layer_idx=-2,
                hidden_size=HIDDEN,
                num_steps=STEPS,
                step_spans=[(i, i + 1) for i in range(STEPS)],
                token_ids=list(range(STEPS)),
                H=H,
            )
        )
    return out


if __name__ == "__main__":
    store = LatentStore(StorageLayout(sys.argv[1]))
    shard = 0
    while True:
        store.write("kill", "v1", sequences(shard), shard_size=PER_SHARD, append=True)
        shard += 1
