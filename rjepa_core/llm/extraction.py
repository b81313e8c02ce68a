"""Teacher-forced step-latent extraction (SPEC F3): one hooked layer, exact pooling, float16 out.

    >>> llm = StudentLLM.load("smollm2-135m")
    >>> out = llm.extract([(llm.prompt_for("What is 2+3?"), ["2 + 3 = 5", "So the result is 5"])])
    >>> out[0].H.shape, out[0].H.dtype
    ((2, 576), dtype('float16'))

Why it is fast: chains are sorted by length and batched with right padding (little padding
waste); a forward hook on the ONE requested decoder layer captures its output and aborts the
forward, so later layers and the LM head never run and no other layer's states are kept; each
step is pooled over its token span (mean by default; last token or both by the registry's `pooling`)
with one batched matmul in float32. With a causal model,
chains that share a prompt (K samples of one problem) run the prompt once and only their own
tokens against its cached keys/values (`share_prefix=True`, see `rjepa_core.llm.prefix`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rjepa_core.llm import prefix
from rjepa_core.llm.registry import POOLINGS, QUESTION_POOLINGS
from rjepa_core.segmentation import render_chain_spans, token_spans


@dataclass
class ChainInput:
    prompt: str  # text before the chain (already chat-templated, or plain)
    steps: list[str]  # step texts, rendered as "Step k: ..." lines
    final_answer: str | None = None  # rendered as a last "Answer: X" line when given
    # the problem statement as it appears in `prompt` (its last occurrence): needed by question_pooling="span";
    # None takes the one a rendered `llm.prompting.Prompt` carries
    question: str | None = None


@dataclass
class Extracted:
    H: np.ndarray  # float16 (num_steps, hidden): mean of the layer's output over each step's tokens
    token_ids: list[int]  # the full prompt + chain tokenization the latents come from
    step_spans: list[tuple[int, int]]  # token [start, end) of each step inside token_ids
    # (hidden,) the layer's output at the token just before the first step: a causal model has read the
    # whole prompt (the question) there and nothing of the chain. None for encoders (they see both ways)
    # and for texts whose first step starts at token 0. With question_pooling="span": the mean of the layer's
    # output over the question's own tokens in the prompt instead.
    q: np.ndarray | None = None


def check_question_pooling(question_pooling: str) -> str:
    if question_pooling not in QUESTION_POOLINGS:
        raise ValueError(f"question_pooling {question_pooling!r} is not one of {QUESTION_POOLINGS}")
    return question_pooling


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


def layer_output(llm, input_ids, attention_mask, layer_pos: int, **forward_kwargs):
    """Output of one layer for a padded batch, (B, S, D); nothing after that layer runs.

    `forward_kwargs` go to the model (past_key_values, position_ids, use_cache for prefix sharing).
    """
    import torch

    captured = {}

    def hook(_module, _args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    handle = llm.layers[layer_pos].register_forward_hook(hook)
    try:
        with torch.inference_mode():
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, **forward_kwargs}
            if llm.spec.kind == "causal":
                kwargs.setdefault("use_cache", False)
            llm.model(**kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if "h" not in captured:
        raise RuntimeError(f"layer {layer_pos} of {llm.llm_tag!r} did not run: the hook never fired")
    return clip_states(captured["h"], llm.spec.latent_clip)


def clip_states(h, clip: float | None):
    """States clamped to ±clip (the registry's `latent_clip`), unchanged when clip is None."""
    return h if clip is None else h.clamp(-clip, clip)


def _question_state(llm, h, row: int, start: int, pooling: str = "mean"):
    """The state at token `start - 1` of batch row `row`, pooled like a one-token step: (D,), or (2D,) for
    mean_last (its mean and its last token are the same vector); None for encoders or no token before."""
    if llm.spec.kind != "causal" or start < 1:
        return None
    import torch

    q = h[row, start - 1].float()
    return torch.cat([q, q]) if pooling == "mean_last" else q


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    return pooling


def pooled_width(hidden_size: int, pooling: str) -> int:
    """Width of a step latent: the layer's width, twice it for mean_last (mean and last token side by side)."""
    return hidden_size * (2 if check_pooling(pooling) == "mean_last" else 1)


def _pool(h, spans: list[list[tuple[int, int]]], pooling: str = "mean"):
    """Each step's latent from its token span: (B, S, D) → list of (J_b, D') float32.

    mean: exact mean over the step's tokens; last: the state at its last token (a causal model has read
    the whole step there); mean_last: both concatenated (D' = 2D).
    """
    import torch

    B, S, _ = h.shape
    J = max(len(s) for s in spans)
    weights = torch.zeros(B, J, S, dtype=torch.float32, device=h.device)  # (B, J, S)
    last = torch.zeros(B, J, S, dtype=torch.float32, device=h.device)  # (B, J, S): one-hot at each step's end
    for b, row in enumerate(spans):
        for j, (s, e) in enumerate(row):
            weights[b, j, s:e] = 1.0 / (e - s)
            last[b, j, e - 1] = 1.0
    hf = h.float()
    if pooling == "mean":
        pooled = torch.bmm(weights, hf)  # (B, J, D)
    elif pooling == "last":
        pooled = torch.bmm(last, hf)  # (B, J, D)
    elif pooling == "mean_last":
        pooled = torch.cat([torch.bmm(weights, hf), torch.bmm(last, hf)], dim=-1)  # (B, J, 2D)
    else:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    return [pooled[b, : len(row)] for b, row in enumerate(spans)]


@dataclass
class _Encoded:
    ids: list[int]  # full-text token ids
    offsets: list[tuple[int, int]]  # their character offsets
    spans: list[tuple[int, int]]  # token [start, end) of each step
    qspan: tuple[int, int] | None = None  # token [start, end) of the question, when it is pooled as a span


def _encode(
    llm,
    texts: Sequence[str],
    char_spans_per_text: Sequence[Sequence[tuple[int, int]]],
    question_spans: Sequence[tuple[int, int] | None] | None = None,
) -> list[_Encoded]:
    if len(texts) != len(char_spans_per_text):
        raise ValueError(f"got {len(texts)} texts but {len(char_spans_per_text)} span lists")
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
        qchars = question_spans[i] if question_spans else None
        qspan = token_spans(offsets, [qchars])[0] if qchars else None
        encoded.append(_Encoded(ids, offsets, token_spans(offsets, list(char_spans)), qspan))
    return encoded


def _question_chars(prompt: str, question: str | None, n: int) -> tuple[int, int]:
    """Character span of the question's last occurrence in the prompt (worked examples come before it)."""
    q = (question or "").strip()
    if not q:
        raise ValueError(
            f"chain {n}: question_pooling='span' needs the chain's question: pass ChainInput(question=...) "
            "or a prompt rendered by StudentLLM.prompt_for"
        )
    at = prompt.rfind(q)
    if at < 0:
        raise ValueError(
            f"chain {n}: the question {q[:60]!r} does not appear in its prompt; pass the statement the prompt was "
            "rendered from, or use question_pooling='token'"
        )
    return at, at + len(q)


def _span_state(h, row: int, span: tuple[int, int], pooling: str, offset: int = 0, h_before=None, g: int = 0):
    """Mean (and, for mean_last, last-token) state over token span [s, e) of a batch row; tokens before
    `offset` are read from `h_before[g]` (the shared prompt's states) and the rest from `h[row]`."""
    import torch

    s, e = span
    parts = []
    if s < offset:
        parts.append(h_before[g, s : min(e, offset)])
    if e > offset:
        parts.append(h[row, max(s, offset) - offset : e - offset])
    x = torch.cat(parts).float()  # (e - s, D)
    mean = x.mean(dim=0)
    return torch.cat([mean, x[-1]]) if pooling == "mean_last" else (x[-1] if pooling == "last" else mean)


def _pool_full(
    llm, encoded: list[_Encoded], indices: Sequence[int], layer_pos: int, batch_size: int, pooling: str = "mean"
) -> dict:
    """(pooled float32 (J, D), question state (D,) or None) per index, each text run whole (length-sorted,
    right-padded batches)."""
    import torch

    out = {}
    order = sorted(indices, key=lambda i: len(encoded[i].ids), reverse=True)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i].ids) for i in idx)
        input_ids = torch.full((len(idx), width), llm.pad_token_id, dtype=torch.long)  # (B, S)
        attention_mask = torch.zeros((len(idx), width), dtype=torch.long)  # (B, S)
        for row, i in enumerate(idx):
            input_ids[row, : len(encoded[i].ids)] = torch.tensor(encoded[i].ids)
            attention_mask[row, : len(encoded[i].ids)] = 1
        h = layer_output(llm, input_ids.to(llm.device), attention_mask.to(llm.device), layer_pos)  # (B, S, D)
        pooled = _pool(h, [encoded[i].spans for i in idx], pooling)
        for row, i in enumerate(idx):
            e = encoded[i]
            if e.qspan:
                q = _span_state(h, row, e.qspan, pooling)
            else:
                q = _question_state(llm, h, row, e.spans[0][0], pooling)
            out[i] = (pooled[row], q)
    return out


def _pool_shared(llm, encoded: list[_Encoded], groups, layer_pos: int, batch_size: int, pooling: str = "mean") -> dict:
    """(pooled (J, D), question state) per member of `groups`: each prompt runs once, chains run on its cache.

    Up to `batch_size` equal-length prompts run together (no padding, so positions stay exact);
    their members' chain tokens then run in length-sorted batches, each row on its prompt's cache.
    """
    import torch

    config, dev, out = llm.model.config, llm.device, {}
    for P, bucket in prefix.buckets_by_length(groups).items():
        for g0 in range(0, len(bucket), batch_size):
            window = bucket[g0 : g0 + batch_size]
            cache = prefix.new_cache(config, layer_pos)
            prompt_ids = torch.tensor([g.prompt_ids for g in window], device=dev)  # (G, P)
            h_prompt = layer_output(
                llm, prompt_ids, torch.ones_like(prompt_ids), layer_pos, past_key_values=cache, use_cache=True
            )  # (G, P, D)
            keys, values = prefix.cached_kv(cache, layer_pos)  # per layer (G, H_kv, P, d)
            rows = sorted(
                ((i, g) for g, group in enumerate(window) for i in group.members),
                key=lambda r: len(encoded[r[0]].ids),
                reverse=True,
            )
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                which = torch.tensor([g for _, g in chunk], device=dev)  # (B,)
                row_cache = prefix.cache_for_rows(config, keys, values, which)
                ids, mask, pos = prefix.continuation_batch([encoded[i].ids[P:] for i, _ in chunk], P, llm.pad_token_id)
                h = layer_output(
                    llm,
                    ids.to(dev),
                    mask.to(dev),
                    layer_pos,
                    past_key_values=row_cache,
                    position_ids=pos.to(dev),
                    use_cache=True,  # the calling convention of cached generation, which every causal LM supports
                )  # (B, C, D): the chain tokens only
                spans = [[(s - P, e - P) for s, e in encoded[i].spans] for i, _ in chunk]
                pooled = _pool(h, spans, pooling)
                for row, (i, g) in enumerate(chunk):
                    start = encoded[i].spans[0][0]  # the question state sits in the chain part or the prompt
                    if encoded[i].qspan:
                        q = _span_state(h, row, encoded[i].qspan, pooling, offset=P, h_before=h_prompt, g=g)
                    elif start > P:
                        q = _question_state(llm, h, row, start - P, pooling)
                    else:
                        q = _question_state(llm, h_prompt, g, start, pooling)
                    out[i] = (pooled[row], q)
    return out


def _results(encoded: list[_Encoded], pooled: dict, dtype) -> list[Extracted]:
    out = []
    for i, e in enumerate(encoded):
        H, q = pooled[i]
        q = q.cpu().numpy().astype(dtype) if q is not None else None
        out.append(Extracted(H=H.cpu().numpy().astype(dtype), token_ids=e.ids, step_spans=e.spans, q=q))
    return out


def extract_texts(
    llm,
    texts: Sequence[str],
    char_spans_per_text: Sequence[Sequence[tuple[int, int]]],
    layer_idx: int | None = None,
    batch_size: int | None = None,
    pooling: str | None = None,
) -> list[Extracted]:
    """Pooled latents of arbitrary character spans of arbitrary texts (lower level than `extract`)."""
    layer_pos = resolve_layer(llm.spec.layer_idx if layer_idx is None else layer_idx, llm.num_layers)
    pooling = check_pooling(llm.spec.pooling if pooling is None else pooling)
    encoded = _encode(llm, texts, char_spans_per_text)
    pooled = _pool_full(llm, encoded, range(len(encoded)), layer_pos, batch_size or llm.spec.batch_size, pooling)
    return _results(encoded, pooled, np.float16)


def _as_chain(item) -> ChainInput:
    """A ChainInput; its question defaults to the one a rendered `Prompt` carries (llm.prompting)."""
    if isinstance(item, tuple | list) and len(item) in (2, 3, 4):
        item = ChainInput(*item)
    if isinstance(item, ChainInput):
        if item.question is None and getattr(item.prompt, "question", None):
            item = dataclasses.replace(item, question=item.prompt.question)
        return item
    raise TypeError(f"expected (prompt, steps[, final_answer[, question]]) or ChainInput, got {type(item).__name__}")


def extract_float32(
    llm,
    items,
    layer_idx: int | None = None,
    batch_size: int | None = None,
    share_prefix: bool = True,
    pooling: str | None = None,
    question_pooling: str | None = None,
) -> list[Extracted]:
    """`extract` before the float16 cast (H float32): for exactness checks and callers that want full precision."""
    question_pooling = check_question_pooling(question_pooling or llm.spec.question_pooling)
    prompts, texts, spans, qspans = [], [], [], []
    for n, item in enumerate(items):
        chain = _as_chain(item)
        if not chain.steps:
            raise ValueError(f"chain {n} has no steps: every chain needs at least one non-empty step")
        try:
            body, char_spans = render_chain_spans(chain.steps, chain.final_answer)
        except ValueError as exc:
            raise ValueError(f"chain {n}: {exc}") from exc
        prompts.append(chain.prompt)
        if question_pooling == "span" and llm.spec.kind == "causal":
            qspans.append(_question_chars(chain.prompt, chain.question, n))
        texts.append(chain.prompt + body)
        spans.append([(len(chain.prompt) + s, len(chain.prompt) + e) for s, e in char_spans])
    layer_pos = resolve_layer(llm.spec.layer_idx if layer_idx is None else layer_idx, llm.num_layers)
    pooling = check_pooling(llm.spec.pooling if pooling is None else pooling)
    batch_size = batch_size or llm.spec.batch_size
    encoded = _encode(llm, texts, spans, qspans or None)
    groups, rest = [], list(range(len(encoded)))
    if share_prefix and llm.spec.kind == "causal" and prefix.new_cache(llm.model.config, layer_pos) is not None:
        prompt_tokens = {p: encode_with_offsets(llm.tokenizer, p) for p in dict.fromkeys(prompts)}
        groups, rest = prefix.plan_prefix_groups(
            prompts, prompt_tokens, [e.ids for e in encoded], [e.offsets for e in encoded], [e.spans for e in encoded]
        )
    pooled = _pool_full(llm, encoded, rest, layer_pos, batch_size, pooling)
    pooled.update(_pool_shared(llm, encoded, groups, layer_pos, batch_size, pooling))
    return _results(encoded, pooled, np.float32)


def extract(
    llm,
    items,
    layer_idx: int | None = None,
    batch_size: int | None = None,
    share_prefix: bool = True,
    pooling: str | None = None,
    question_pooling: str | None = None,
) -> list[Extracted]:
    """Latents of chains; each item is (prompt_text, steps) or a ChainInput. Text = prompt + render_chain.

    share_prefix: chains with the same prompt run it once (causal models; same latents, less compute).
    pooling: mean | last | mean_last (default: the registry entry's `pooling`).
    question_pooling: token | span (default: the registry entry's); span needs ChainInput.question.
    """
    out = extract_float32(
        llm,
        items,
        layer_idx=layer_idx,
        batch_size=batch_size,
        share_prefix=share_prefix,
        pooling=pooling,
        question_pooling=question_pooling,
    )
    for ex in out:
        ex.H = ex.H.astype(np.float16)  # (J, D)
        ex.q = ex.q.astype(np.float16) if ex.q is not None else None  # (D,)
    return out
