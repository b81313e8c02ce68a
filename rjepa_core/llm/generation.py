"""Batched sampling of K chains per prompt with per-chain log-probabilities (SPEC F3).

    >>> llm = StudentLLM.load("smollm2-135m")
    >>> chains = llm.generate([llm.prompt_for("What is 3 + 4?")], k=4, seed=0)[0]
    >>> [(c.final_answer, round(c.logprob, 1)) for c in chains]

`logprob` is the sum over kept tokens of log p(token | prefix) under the model's own distribution
(temperature 1, no top-p), whatever temperature sampled it, so chains sampled at different
temperatures stay comparable for reranking. Generation stops at EOS or after a complete
"Answer: ..." line; text after that line is dropped (and its tokens are not counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rjepa_core.llm.extraction import Extracted, adds_special_tokens, encode_with_offsets
from rjepa_core.segmentation import extract_final_answer, segment, token_spans

# A finished final-answer line (inline "Answer:" included); generation may stop after it.
_ANSWER_LINE = re.compile(r"(?:\b(?:final\s+)?answer\s*:|####)[^\n]*\S[^\n]*", re.IGNORECASE)


@dataclass
class GeneratedChain:
    text: str  # generated text, cut after the final-answer line
    steps: list[str]  # segmented steps (auto mode)
    final_answer: str | None  # extracted from `text`
    token_ids: list[int]  # tokenization of prompt + text (the convention of `extract`)
    step_spans: list[tuple[int, int]]  # token [start, end) of each step inside token_ids
    logprob: float  # sum of model log-probs (temperature 1) of the kept generated tokens
    num_new_tokens: int  # generated tokens kept (EOS included when it ended the chain)
    # step latents captured while sampling (`generate(capture=...)`, see llm.capture): H pooled over the
    # generated tokens, token_ids = prompt ids + kept generated ids; None when not captured
    latents: Extracted | None = None


def states_answer(text: str) -> bool:
    """The text has a finished final-answer line ("Answer: ...", "#### ...")."""
    return bool(_ANSWER_LINE.search(text))


def cut_after_answer(text: str) -> str:
    """Text up to the end of its first final-answer line."""
    m = _ANSWER_LINE.search(text)
    return (text[: m.end()] if m else text).rstrip()


def _stop_when(tokenizer, prompt_len: int, done_text):
    """Stop a row once `done_text(generated text)` holds; checked only when the newest token has a newline."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Done(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for b in range(input_ids.shape[0]):
                # Only a newline can complete a line: decode the whole row only then.
                if "\n" not in tokenizer.decode(input_ids[b, -1:]):
                    continue
                done[b] = done_text(tokenizer.decode(input_ids[b, prompt_len:], skip_special_tokens=True))
            return done

    return StoppingCriteriaList([Done()])


def _answer_line_done(text: str) -> bool:
    m = _ANSWER_LINE.search(text)
    return bool(m) and "\n" in text[m.end() :]


def _line_done(text: str) -> bool:
    return bool(text.strip()) and "\n" in text.lstrip()


def _eos_ids(llm) -> list[int]:
    ids = set()
    for source in (llm.tokenizer.eos_token_id, getattr(llm.model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(x) for x in source)
    vocab = llm.tokenizer.get_vocab()
    ids.update(vocab[t] for t in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>") if t in vocab)
    return sorted(ids)


def _kept_tokens(tokenizer, new_ids: list[int], kept_text: str) -> int:
    """How many generated tokens produce `kept_text` (the EOS counts when it ended the chain)."""
    full = tokenizer.decode(new_ids, skip_special_tokens=True).rstrip()
    if full == kept_text:
        return len(new_ids)
    for n in range(1, len(new_ids) + 1):
        if len(tokenizer.decode(new_ids[:n], skip_special_tokens=True).rstrip()) >= len(kept_text):
            return n
    return len(new_ids)


def _finish(llm, prompt: str, new_ids: list[int], token_logps: list[float], eos: set[int]) -> GeneratedChain:
    end = next((i + 1 for i, t in enumerate(new_ids) if t in eos), len(new_ids))
    new_ids, token_logps = new_ids[:end], token_logps[:end]
    raw = llm.tokenizer.decode(new_ids, skip_special_tokens=True)
    text = cut_after_answer(raw)
    n = _kept_tokens(llm.tokenizer, new_ids, text)
    segments = segment(text, "auto")
    full_ids, offsets = encode_with_offsets(llm.tokenizer, prompt + text)
    spans = token_spans(offsets, [(len(prompt) + s.start, len(prompt) + s.end) for s in segments]) if segments else []
    return GeneratedChain(
        text=text,
        steps=[s.text for s in segments],
        final_answer=extract_final_answer(text) if text else None,
        token_ids=full_ids,
        step_spans=spans,
        logprob=float(sum(token_logps[:n])),
        num_new_tokens=n,
    )


def _config(llm, temperature: float, max_new_tokens: int, top_p: float, token_bias: dict[int, float] | None):
    from transformers import GenerationConfig

    greedy = temperature < 1e-2  # tiny temperatures overflow the softmax: treat them as greedy
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=None if greedy else temperature,
        top_p=None if greedy else top_p,
        top_k=None,
        eos_token_id=_eos_ids(llm),
        pad_token_id=llm.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
        sequence_bias={(int(t),): float(b) for t, b in token_bias.items()} if token_bias else None,
    )


def _check_args(llm, k: int, temperature: float, max_new_tokens: int) -> None:
    if llm.spec.kind != "causal":
        raise ValueError(f"llm {llm.llm_tag!r} is an encoder: it gives latents but cannot generate")
    if k < 1 or max_new_tokens < 1:
        raise ValueError(f"k and max_new_tokens must be >= 1 (got k={k}, max_new_tokens={max_new_tokens})")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")


@dataclass
class _Batch:
    """One `model.generate` call: its rows, their token ids and, when captured, the hooked layer's states."""

    rows: list[int]  # prompt index of each batch row
    prompt_ids: list[list[int]]  # each row's prompt token ids (unpadded)
    width: int  # left-padded prompt width P
    new: Any  # (B, T) generated token ids, on CPU
    logps: Any  # (B, T) their log-probs at temperature 1
    states: Any = None  # (B, P + T - 1, D) float16 layer output (capture only)
    result: Any = None  # the generate output (its cache serves capture's extra step)
    attention_mask: Any = None  # (B, P) the prompt mask the generation started from


def _sample_batches(
    llm, prompts: Sequence[str], k: int, config, stopping, seed: int | None, batch_size: int | None, recorder=None
):
    """Yield one `_Batch` per generate call, k samples per prompt; `recorder` (llm.capture.LayerRecorder)
    records the hooked layer during each call."""
    import contextlib

    import torch

    rows = [p for p in range(len(prompts)) for _ in range(k)]
    batch_size = batch_size or llm.spec.batch_size
    devices = [torch.cuda.current_device()] if str(llm.device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            encoded = [
                llm.tokenizer(prompts[p], add_special_tokens=adds_special_tokens(llm.tokenizer, prompts[p]))[
                    "input_ids"
                ]
                for p in chunk
            ]
            width = max(len(ids) for ids in encoded)
            input_ids = torch.full((len(chunk), width), llm.pad_token_id, dtype=torch.long)  # (B, P) left-padded
            attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)  # (B, P)
            for row, ids in enumerate(encoded):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention_mask[row, width - len(ids) :] = 1
            attention_mask = attention_mask.to(llm.device)
            with recorder if recorder is not None else contextlib.nullcontext():
                result = llm.model.generate(
                    input_ids=input_ids.to(llm.device),
                    attention_mask=attention_mask,
                    generation_config=config,
                    stopping_criteria=stopping(width),
                )
            new = result.sequences[:, width:].cpu()  # (B, T)
            logits = torch.stack(result.logits, dim=1).float()  # (B, T, V) raw model logits
            logps = torch.log_softmax(logits, dim=-1).gather(-1, new.to(logits.device)[..., None])[..., 0]  # (B, T)
            batch = _Batch(chunk, encoded, width, new, logps.cpu())
            if recorder is not None:
                batch.states, batch.result, batch.attention_mask = recorder.states(), result, attention_mask
            yield batch


def generate(
    llm,
    prompts: Sequence[str] | str,
    k: int = 1,
    temperature: float = 0.7,
    max_new_tokens: int = 160,
    top_p: float = 0.95,
    seed: int | None = None,
    batch_size: int | None = None,
    capture=None,
    capture_stats=None,
) -> list[list[GeneratedChain]]:
    """k chains per prompt (temperature 0 = greedy); result[i][j] is chain j of prompt i.

    capture: True or a `llm.capture.CaptureSpec` records the hooked layer while sampling and gives each
    chain its step latents (`GeneratedChain.latents`, pooled as `extract` pools) with no second forward.
    capture_stats: a `llm.capture.CaptureStats` to add capture's own time and misses to.
    """
    from rjepa_core.llm import capture as cap

    if isinstance(prompts, str):
        prompts = [prompts]
    _check_args(llm, k, temperature, max_new_tokens)
    spec = cap.resolve_capture(llm, capture)
    recorder = None
    if spec is not None:
        cap.check_prompts(spec, prompts)
        capture_stats = capture_stats if capture_stats is not None else cap.CaptureStats()
        layer_pos = cap.extraction.resolve_layer(spec.layer_idx, llm.num_layers)
        recorder = cap.LayerRecorder(llm.layers[layer_pos], capture_stats, clip=llm.spec.latent_clip)
    config = _config(llm, temperature, max_new_tokens, top_p, None)
    eos = set(config.eos_token_id)
    out: list[list[GeneratedChain]] = [[] for _ in prompts]
    stopping = lambda width: _stop_when(llm.tokenizer, width, _answer_line_done)  # noqa: E731
    for batch in _sample_batches(llm, prompts, k, config, stopping, seed, batch_size, recorder):
        chains = [
            _finish(llm, prompts[p], batch.new[row].tolist(), batch.logps[row].tolist(), eos)
            for row, p in enumerate(batch.rows)
        ]
        if spec is not None:
            cap.pool_captured(llm, spec, batch, [prompts[p] for p in batch.rows], chains, capture_stats)
            batch.states = batch.result = None  # free the states before the next call
        for p, chain in zip(batch.rows, chains, strict=True):
            out[p].append(chain)
    return out


@dataclass
class NextStep:
    """One sampled next line of a chain (a step, or the final-answer line)."""

    text: str  # the line, without its newline (may be blank when the model stopped at once)
    logprob: float  # sum of the kept tokens' log-probs (temperature 1)
    num_tokens: int  # generated tokens kept
    is_answer: bool  # the line states the final answer ("Answer: ..."): the chain ends with it
    ended: bool  # the model ended the chain (EOS) or states the answer: nothing follows
    # the latent of the step the line states, captured while sampling (`next_steps(capture=...)`): H (1, D')
    # pooled over its generated tokens, q the question latent from the context's prompt part, token_ids the
    # context ids + the kept generated ids; None when not captured, or the line states no step
    latents: Extracted | None = None


def next_steps(
    llm,
    context: str,
    k: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 64,
    top_p: float = 0.95,
    seed: int | None = None,
    token_bias: dict[int, float] | None = None,
    batch_size: int | None = None,
    capture=None,
    prompt: str | None = None,
    capture_stats=None,
) -> list[NextStep]:
    """k samples of the line that follows `context` (prompt + the chain so far, ending at a line break).

    token_bias: added to those token ids' logits at every position (NUDGE's optional bias toward the
    tokens of the world model's predicted step).
    capture: True or a `llm.capture.CaptureSpec` gives each line that states a step its latent, recorded
    while sampling (`NextStep.latents`, pooled as `extract` pools that step after the same context).
    prompt: the prompt part of `context` (default: all of it), where the question latent is taken: a rendered
    `llm.prompting.Prompt` carries the question that question_pooling="span" pools.
    capture_stats: a `llm.capture.CaptureStats` to add capture's own time and misses to.
    """
    from rjepa_core.llm import capture as cap

    _check_args(llm, k, temperature, max_new_tokens)
    prompt = context if prompt is None else prompt
    if not context.startswith(prompt):
        raise ValueError("next_steps: `prompt` must be the start of `context` (the prompt the chain so far follows)")
    spec = cap.resolve_capture(llm, capture)
    recorder = None
    if spec is not None:
        cap.check_prompts(spec, [prompt])
        capture_stats = capture_stats if capture_stats is not None else cap.CaptureStats()
        layer_pos = cap.extraction.resolve_layer(spec.layer_idx, llm.num_layers)
        recorder = cap.LayerRecorder(llm.layers[layer_pos], capture_stats, clip=llm.spec.latent_clip)
    config = _config(llm, temperature, max_new_tokens, top_p, token_bias)
    eos = set(config.eos_token_id)
    stopping = lambda width: _stop_when(llm.tokenizer, width, _line_done)  # noqa: E731
    out = []
    for batch in _sample_batches(llm, [context], k, config, stopping, seed, batch_size, recorder):
        lines, kept_texts = [], []
        for row in range(len(batch.rows)):
            new_ids, logps = batch.new[row].tolist(), batch.logps[row].tolist()
            end = next((i + 1 for i, t in enumerate(new_ids) if t in eos), len(new_ids))
            hit_eos = end <= len(new_ids) and bool(new_ids) and new_ids[end - 1] in eos
            new_ids, logps = new_ids[:end], logps[:end]
            raw = llm.tokenizer.decode(new_ids, skip_special_tokens=True)
            body = raw.lstrip("\n")
            line = body.split("\n", 1)[0].rstrip()
            kept = raw[: len(raw) - len(body)] + line
            n = _kept_tokens(llm.tokenizer, new_ids, kept) if kept.strip() else len(new_ids)
            is_answer = bool(_ANSWER_LINE.search(line))
            lines.append(NextStep(line.strip(), float(sum(logps[:n])), n, is_answer, hit_eos or is_answer or not line))
            kept_texts.append((kept, len(raw) - len(body)))
        if spec is not None:
            cap.pool_lines(llm, spec, batch, context, prompt, lines, kept_texts, capture_stats)
            batch.states = batch.result = None  # free the states before the next call
        out.extend(lines)
    return out


def logprobs(llm, prompts: Sequence[str], continuations: Sequence[str], batch_size: int | None = None) -> list[float]:
    """Teacher-forced log p(continuation | prompt) under the model (temperature 1), one tokenization each."""
    import torch

    if llm.spec.kind != "causal":
        raise ValueError(f"llm {llm.llm_tag!r} is an encoder: it has no next-token log-probabilities")
    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
    batch_size = batch_size or llm.spec.batch_size
    encoded = []
    for i, (prompt, cont) in enumerate(zip(prompts, continuations, strict=True)):
        if not cont:
            raise ValueError(f"continuation {i} is empty")
        ids, offsets = encode_with_offsets(llm.tokenizer, prompt + cont)
        # first token carrying continuation characters; a token straddling the boundary counts.
        first = next((j for j, (s, e) in enumerate(offsets) if e > len(prompt) and e > s), None)
        if first is None:
            raise ValueError(f"continuation {i} has no tokens of its own (blank or merged into the prompt)")
        encoded.append((ids, max(first, 1)))
    scores = [0.0] * len(encoded)
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            idx = list(range(start, min(start + batch_size, len(encoded))))
            width = max(len(encoded[i][0]) for i in idx)
            input_ids = torch.full((len(idx), width), llm.pad_token_id, dtype=torch.long)  # (B, S) right-padded
            attention_mask = torch.zeros((len(idx), width), dtype=torch.long)  # (B, S)
            for row, i in enumerate(idx):
                ids = encoded[i][0]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention_mask[row, : len(ids)] = 1
            logits = llm.model(
                input_ids=input_ids.to(llm.device), attention_mask=attention_mask.to(llm.device), use_cache=False
            ).logits  # (B, S, V)
            for row, i in enumerate(idx):
                ids, first = encoded[i]
                pred = torch.log_softmax(logits[row, first - 1 : len(ids) - 1].float(), dim=-1)  # (T, V)
                target = torch.tensor(ids[first:], device=pred.device)
                scores[i] = float(pred.gather(-1, target[:, None]).sum())
    return scores
