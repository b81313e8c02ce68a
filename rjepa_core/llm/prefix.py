"""Shared prompt prefixes for teacher-forced extraction: group chains by prompt, reuse the prompt's KV cache.

    >>> from rjepa_core.llm.prefix import plan_prefix_groups
    >>> prompt_tokens = {"Q: ": ([5, 6], [(0, 2), (2, 3)])}           # prompt text -> (ids, offsets)
    >>> ids = [[5, 6, 7], [5, 6, 8, 9], [5, 10]]                       # full-text tokenizations
    >>> offsets = [[(0, 2), (2, 3), (3, 5)], [(0, 2), (2, 3), (3, 4), (4, 6)], [(0, 2), (2, 5)]]
    >>> groups, rest = plan_prefix_groups(["Q: "] * 3, prompt_tokens, ids, offsets, [[(2, 3)], [(2, 4)], [(1, 2)]])
    >>> groups[0].members, rest          # chain 2's first token swallowed the prompt's last: it runs whole
    ([0, 1], [2])

K sampled chains of one problem share a ~100-token chat-templated prompt while a chain is often
shorter (~40-80 tokens), so recomputing the prompt for every chain is most of the work. A causal layer's
output at a position depends only on the tokens before it, so running the prompt once, keeping the
keys/values of the layers up to the hooked one, and running each chain's own tokens against that
cache gives the same hidden states. The split is exact only where the full text's tokenization
starts with the prompt's own tokens (byte-level BPE may merge across the boundary, e.g. a prompt
ending in a space before "Step"); other chains are left to the unshared path. This module knows
tokens and caches; the model runs in `rjepa_core.llm.extraction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class PrefixGroup:
    prompt_ids: list[int]  # token ids of the prompt alone: the first P ids of every member's full text
    members: list[int] = field(default_factory=list)  # indices of the chains that reuse this prompt's cache


def splits_at_prompt(
    prompt_ids: Sequence[int],
    prompt_offsets: Sequence[tuple[int, int]],
    full_ids: Sequence[int],
    full_offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
) -> bool:
    """True when the full tokenization is the prompt's tokens followed by tokens that hold every step."""
    P = len(prompt_ids)
    return (
        0 < P < len(full_ids)
        and list(full_ids[:P]) == list(prompt_ids)
        and [tuple(o) for o in full_offsets[:P]] == [tuple(o) for o in prompt_offsets]
        and all(s >= P for s, _ in spans)
    )


def plan_prefix_groups(
    prompts: Sequence[str],
    prompt_tokens: dict[str, tuple[list[int], list[tuple[int, int]]]],
    full_ids: Sequence[Sequence[int]],
    full_offsets: Sequence[Sequence[tuple[int, int]]],
    spans: Sequence[Sequence[tuple[int, int]]],
) -> tuple[list[PrefixGroup], list[int]]:
    """Groups of >= 2 chains that can share their prompt's cache, and the indices left to the full path.

    `prompt_tokens` maps each distinct prompt text to its own (ids, offsets). A chain joins its
    prompt's group only when `splits_at_prompt` holds; a group left with one chain gains nothing
    from sharing (two forwards instead of one), so that chain goes back to the full path.
    """
    by_prompt: dict[str, PrefixGroup] = {}
    fallback: list[int] = []
    for i, prompt in enumerate(prompts):
        p_ids, p_offsets = prompt_tokens[prompt]
        if splits_at_prompt(p_ids, p_offsets, full_ids[i], full_offsets[i], spans[i]):
            by_prompt.setdefault(prompt, PrefixGroup(prompt_ids=list(p_ids))).members.append(i)
        else:
            fallback.append(i)
    groups = []
    for group in by_prompt.values():
        if len(group.members) >= 2:
            groups.append(group)
        else:
            fallback.extend(group.members)
    return groups, sorted(fallback)


def buckets_by_length(groups: Sequence[PrefixGroup]) -> dict[int, list[PrefixGroup]]:
    """Groups keyed by prompt token length: equal-length prompts batch (and their caches stack) with no padding."""
    out: dict[int, list[PrefixGroup]] = {}
    for g in groups:
        out.setdefault(len(g.prompt_ids), []).append(g)
    return out


def new_cache(config, upto: int):
    """An empty DynamicCache for the model, or None when a layer up to `upto` is not a plain full-attention layer.

    Sliding-window or quantized cache layers would drop or alter prompt keys, so such models keep
    the unshared path.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    if len(cache.layers) <= upto or any(type(layer) is not DynamicLayer for layer in cache.layers[: upto + 1]):
        return None
    return cache


def cached_kv(cache, upto: int):
    """(keys, values) of layers 0..upto from a cache filled by a forward stopped after layer `upto`."""
    keys = [cache.layers[i].keys for i in range(upto + 1)]  # each (G, H_kv, P, d)
    values = [cache.layers[i].values for i in range(upto + 1)]  # each (G, H_kv, P, d)
    return keys, values


def cache_for_rows(config, keys, values, rows):
    """A fresh DynamicCache holding, for each batch row, the prompt keys/values of prompt `rows[b]`."""
    cache = new_cache(config, len(keys) - 1)
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        cache.layers[i].update(k.index_select(0, rows), v.index_select(0, rows))  # (B, H_kv, P, d)
    return cache


def continuation_batch(conts: Sequence[Sequence[int]], prefix_len: int, pad_id: int):
    """Right-padded chain tokens with the mask over prompt + chain and their absolute positions.

    Returns input_ids (B, C), attention_mask (B, P + C) and position_ids (B, C) = P + arange(C):
    the prompt is never padded (all prompts of a batch have length P), so positions match the
    unshared forward exactly; right padding after a causal chain cannot change its real tokens.
    """
    import torch

    B, C = len(conts), max(len(c) for c in conts)
    input_ids = torch.full((B, C), pad_id, dtype=torch.long)  # (B, C)
    attention_mask = torch.zeros((B, prefix_len + C), dtype=torch.long)  # (B, P + C)
    attention_mask[:, :prefix_len] = 1
    for b, ids in enumerate(conts):
        input_ids[b, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[b, prefix_len : prefix_len + len(ids)] = 1
    position_ids = (torch.arange(C) + prefix_len).unsqueeze(0).expand(B, C)  # (B, C)
    return input_ids, attention_mask, position_ids
