"""Teacher-forced step-latent extraction (SPEC F3): one hooked layer, exact pooling, float16 out.

    >>> llm = StudentLLM.load("smollm2-135m")
    >>> out = llm.extract([(llm.prompt_for("What is 2+3?"), ["2 + 3 = 5", "So the result is 5"])])
    >>> out[0].H.shape, out[0].H.dtype
    ((2, 576), dtype('float16'))

Why it is fast: chains are sorted by length and batched with right padding (little padding
waste); a forward hook on the ONE requested decoder layer captures its output and aborts the
forward, so later layers and the LM head never run and no other layer's states are kept; each
step is mean-pooled over its token span with one batched matmul in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rjepa_core.segmentation import render_chain_spans, token_spans


@dataclass
class ChainInput:
    prompt: str  # text before the chain (already chat-templated, or plain)
    steps: list[str]  # step texts, rendered as "Step k: ..." lines
    final_answer: str | None = None  # rendered as a last "Answer: X" line when given


@dataclass
class Extracted:
    H: np.ndarray  # float16 (num_steps, hidden): mean of the layer's output over each step's tokens
    token_ids: list[int]  # the full prompt + chain tokenization the latents come from
    step_spans: list[tuple[int, int]]  # token [start, end) of each step inside token_ids


class _StopForward(Exception):
    """Raised inside the layer hook to abort the forward once the wanted layer has run."""


def resolve_layer(layer_idx: int, num_layers: int) -> int:
    """Position in the layer list; -1 = last layer's output (before the final norm), -2 = the one before."""
    if not -num_layers <= layer_idx < num_layers:
        raise ValueError(
            f"layer_idx {layer_idx} is out of range for a model with {num_layers} layers: "
            f"use {-num_layers}..{num_layers - 1} (negative counts from the end, -1 = last layer)"
        )
    return layer_idx % num_layers


def adds_special_tokens(tokenizer, text: str) -> bool:
    """Skip the tokenizer's BOS when the text already starts with it (chat templates write it)."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def encode_with_offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=adds_special_tokens(tokenizer, text), return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def layer_output(llm, input_ids, attention_mask, layer_pos: int):
    """Output of one layer for a padded batch, (B, S, D); nothing after that layer runs."""
    import torch

    captured = {}

    def hook(_module, _args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    handle = llm.layers[layer_pos].register_forward_hook(hook)
    try:
        with torch.inference_mode():
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if llm.spec.kind == "causal":
                kwargs["use_cache"] = False
            llm.model(**kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if "h" not in captured:
        raise RuntimeError(f"layer {layer_pos} of {llm.llm_tag!r} did not run: the hook never fired")
    return captured["h"]


def _pool(h, spans: list[list[tuple[int, int]]]):
    """Exact mean over each step's tokens: (B, S, D) → list of (J_b, D) float32."""
    import torch

    B, S, _ = h.shape
    J = max(len(s) for s in spans)
    weights = torch.zeros(B, J, S, dtype=torch.float32, device=h.device)  # (B, J, S)
    for b, row in enumerate(spans):
        for j, (s, e) in enumerate(row):
            weights[b, j, s:e] = 1.0 / (e - s)
    pooled = torch.bmm(weights, h.float())  # (B, J, D)
    return [pooled[b, : len(row)] for b, row in enumerate(spans)]


def extract_texts(
    llm,
    texts: Sequence[str],
    char_spans_per_text: Sequence[Sequence[tuple[int, int]]],
    layer_idx: int | None = None,
    batch_size: int | None = None,
) -> list[Extracted]:
    """Pooled latents of arbitrary character spans of arbitrary texts (lower level than `extract`)."""
    import torch

    if len(texts) != len(char_spans_per_text):
        raise ValueError(f"got {len(texts)} texts but {len(char_spans_per_text)} span lists")
    layer_pos = resolve_layer(llm.spec.layer_idx if layer_idx is None else layer_idx, llm.num_layers)
    batch_size = batch_size or llm.spec.batch_size
    encoded = []
    for i, (text, char_spans) in enumerate(zip(texts, char_spans_per_text, strict=True)):
        if not char_spans:
            raise ValueError(f"text {i} has no steps: every chain needs at least one non-empty step")
        ids, offsets = encode_with_offsets(llm.tokenizer, text)
        if len(ids) > llm.spec.max_length:
            raise ValueError(
                f"text {i} has {len(ids)} tokens > max_length {llm.spec.max_length} of {llm.llm_tag!r}: "
                "shorten the chain or raise max_length in the registry YAML"
            )
        encoded.append((ids, token_spans(offsets, list(char_spans))))
    pad_id = llm.pad_token_id
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]), reverse=True)
    results: list[Extracted | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in idx)
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)  # (B, S)
        attention_mask = torch.zeros((len(idx), width), dtype=torch.long)  # (B, S)
        for row, i in enumerate(idx):
            ids = encoded[i][0]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        h = layer_output(llm, input_ids.to(llm.device), attention_mask.to(llm.device), layer_pos)  # (B, S, D)
        pooled = _pool(h, [encoded[i][1] for i in idx])
        for row, i in enumerate(idx):
            H = pooled[row].cpu().numpy().astype(np.float16)  # (J, D)
            results[i] = Extracted(H=H, token_ids=encoded[i][0], step_spans=encoded[i][1])
    return results  # type: ignore[return-value]


def _as_chain(item) -> ChainInput:
    if isinstance(item, ChainInput):
        return item
    if isinstance(item, tuple | list) and len(item) in (2, 3):
        return ChainInput(*item)
    raise TypeError(f"expected (prompt, steps) or ChainInput, got {type(item).__name__}")


def extract(llm, items, layer_idx: int | None = None, batch_size: int | None = None) -> list[Extracted]:
    """Latents of chains; each item is (prompt_text, steps) or a ChainInput. Text = prompt + render_chain."""
    texts, spans = [], []
    for n, item in enumerate(items):
        chain = _as_chain(item)
        if not chain.steps:
            raise ValueError(f"chain {n} has no steps: every chain needs at least one non-empty step")
        try:
            body, char_spans = render_chain_spans(chain.steps, chain.final_answer)
        except ValueError as exc:
            raise ValueError(f"chain {n}: {exc}") from exc
        texts.append(chain.prompt + body)
        spans.append([(len(chain.prompt) + s, len(chain.prompt) + e) for s, e in char_spans])
    return extract_texts(llm, texts, spans, layer_idx=layer_idx, batch_size=batch_size)
