"""Step latents captured while the student samples (SPEC F3): no second forward over sampled chains.

    >>> chains = llm.generate([llm.prompt_for("What is 3 + 4?")], k=4, seed=0, capture=True)[0]
    >>> chains[0].latents.H.shape, chains[0].latents.H.dtype     # as llm.extract gives them
    ((3, 576), dtype('float16'))

How: a forward hook on the registry's layer (`layer_idx`) records that layer's output during
`model.generate` — the prefill (B, P, D), then one (B, 1, D) per decode step — cast to float16 as it
comes. Rows are left-padded, so row b's prompt sits at [P - L_b, P) and its t-th generated token at
P + t. The last sampled token is never fed back, so its state does not exist: when a step needs it (a
chain cut by `max_new_tokens`), one extra decode step on the generation's cache computes it
(`finish_last=True`, the default), else that step is pooled without it (and a one-token step gets no
latents). Each step's character span in the generated text is mapped onto the *generated* token ids
through their offsets from incremental decoding (the re-tokenization of prompt + text that teacher-forced
extraction uses can split differently), then pooled exactly as `extract` pools (`_pool`, same modes; the
question latent from the prompt's tokens as `question_pooling` says).

`next_steps(..., capture=...)` (NUDGE's one line at a time) pools the same way: each sampled line gets the
latent of the step it states (`line_step_span`: the "Step k:" marker dropped); the question latent is pooled
over the question in the context's prompt part (`prompt=`, question_pooling span), or is the state before the
chain's first step (token), read from the context once that step is written.

The latents are those of the text the model wrote. Teacher-forced extraction renders the steps
canonically ("Step k: ..." lines); the two agree where the written text is that rendering (measured on
SmolLM2 in bench/results/generation.json, `capture_agreement`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rjepa_core.llm import extraction
from rjepa_core.segmentation import segment, token_spans


@dataclass(frozen=True)
class CaptureSpec:
    layer_idx: int | None = None  # student layer whose output is pooled (None: the registry entry's)
    pooling: str | None = None  # mean | last | mean_last (None: the registry entry's)
    question_pooling: str | None = None  # token | span (None: the registry entry's)
    finish_last: bool = True  # run the never-fed last sampled token through the layer when a step needs it


@dataclass
class CaptureStats:
    """Where capture spent its time (seconds, wall clock, summed over batches) and what it could not do."""

    hook_s: float = 0.0  # inside the forward hook (float16 copies of the layer output)
    pool_s: float = 0.0  # offsets, span mapping and pooling after each generate call
    extra_step_s: float = 0.0  # the extra decode steps for never-fed last tokens
    extra_steps: int = 0  # batches that needed one
    chains: int = 0  # chains (or `next_steps` lines) given latents
    missed: int = 0  # chains left without latents (no text, or a span no generated token covers)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.hook_s + self.pool_s + self.extra_step_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook_s": self.hook_s,
            "pool_s": self.pool_s,
            "extra_step_s": self.extra_step_s,
            "seconds": self.seconds,
            "extra_steps": self.extra_steps,
            "chains": self.chains,
            "missed": self.missed,
            "missed_reasons": dict(self.reasons),
        }

    def miss(self, reason: str) -> None:
        self.missed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def resolve_capture(llm, capture: bool | CaptureSpec | None) -> CaptureSpec | None:
    """None when nothing is captured; else the spec with the registry's defaults filled in and checked."""
    if capture is None or capture is False:
        return None
    if llm.spec.kind != "causal":
        raise ValueError(f"llm {llm.llm_tag!r} is an encoder: it cannot sample, so there is nothing to capture")
    spec = CaptureSpec() if capture is True else capture
    if not isinstance(spec, CaptureSpec):
        raise TypeError(f"capture must be a bool or a CaptureSpec, got {type(capture).__name__}")
    layer = llm.spec.layer_idx if spec.layer_idx is None else spec.layer_idx
    extraction.resolve_layer(layer, llm.num_layers)
    return CaptureSpec(
        layer_idx=layer,
        pooling=extraction.check_pooling(spec.pooling or llm.spec.pooling),
        question_pooling=extraction.check_question_pooling(spec.question_pooling or llm.spec.question_pooling),
        finish_last=spec.finish_last,
    )


class LayerRecorder:
    """Forward hook on one decoder layer keeping its output (float16) of every forward while active."""

    def __init__(self, layer, stats: CaptureStats | None = None, clip: float | None = None) -> None:
        self.layer, self.stats, self.chunks, self.handle = layer, stats, [], None
        self.clip = clip  # the registry's latent_clip: clamp before the float16 copy (Gemma-3 overflows it)

    def __enter__(self) -> LayerRecorder:
        self.chunks = []
        self.handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def _hook(self, _module, _args, output) -> None:
        import torch

        tic = time.perf_counter()
        h = output[0] if isinstance(output, tuple) else output
        h = extraction.clip_states(h.detach(), self.clip)
        self.chunks.append(h.to(torch.float16))  # (B, S, D): S = P at prefill, then 1
        if self.stats is not None:
            self.stats.hook_s += time.perf_counter() - tic

    def states(self):
        """(B, P + fed, D): the prefill's states then one per fed token, in sequence order."""
        import torch

        states, self.chunks = torch.cat(self.chunks, dim=1), []
        return states


def generated_offsets(tokenizer, ids: list[int], text: str) -> list[tuple[int, int]]:
    """Character [start, end) in `text` of each generated token, from incremental decoding.

    Token n covers the characters that decoding ids[:n+1] adds to decoding ids[:n] (matched against
    `text`, so a byte token that only starts a multi-byte character covers nothing and the token that
    completes it covers the character; tokens past `text` or special tokens cover nothing).
    """
    out, prev = [], 0
    for n in range(1, len(ids) + 1):
        dec = tokenizer.decode(ids[:n], skip_special_tokens=True)
        if text.startswith(dec):
            end = len(dec)
        else:
            end = 0
            for a, b in zip(dec, text, strict=False):
                if a != b:
                    break
                end += 1
        end = max(end, prev)
        out.append((prev, end))
        prev = end
    return out


def step_char_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the chain's steps in its text: its segments, else the whole stripped text (the
    pipeline's one-step fallback), else none."""
    segments = segment(text, "auto")
    if segments:
        return [(s.start, s.end) for s in segments]
    body = text.strip()
    if not body:
        return []
    start = text.index(body)
    return [(start, start + len(body))]


@dataclass
class _Row:
    row: int  # batch row
    target: Any  # what gets the latents: a GeneratedChain, or a NextStep (llm.generation)
    prompt_ids: list[int]  # the row's context token ids (the prompt, or prompt + chain so far)
    kept: int  # generated tokens kept
    gen_spans: list[tuple[int, int]]  # generated-token [start, end) of each step
    qspan: tuple[int, int] | None  # context-token [start, end) of the question (question_pooling="span")
    # question_pooling="token" with the chain's first step already in the context: that step's first context
    # token (the question state is the one before it); None: before the first generated step
    q_before: int | None = None


def check_prompts(spec: CaptureSpec, prompts) -> None:
    """Fail before sampling when the question latent cannot be taken from a prompt (question_pooling=span)."""
    if spec.question_pooling != "span":
        return
    for n, prompt in enumerate(prompts):
        extraction._question_chars(prompt, getattr(prompt, "question", None), n)


def line_step_span(line: str) -> tuple[int, int] | None:
    """Character span in a generated line of the step it states (NUDGE's step: the "Step k:" marker dropped,
    several sentences one step), None for a line that states none (blank, or the final-answer line)."""
    segments = segment(line) if line.strip() else []
    return (segments[0].start, segments[-1].end) if segments else None


def _question_tokens(llm, spec: CaptureSpec, context: str, prompt: str, row: int):
    """(qspan, q_before) of a row whose context is `prompt` + the chain so far (see `_Row`)."""
    qspan = q_before = None
    if spec.question_pooling == "span":
        question = getattr(prompt, "question", None) or getattr(context, "question", None)
        _, offsets = extraction.encode_with_offsets(llm.tokenizer, context)
        qspan = token_spans(offsets, [extraction._question_chars(prompt, question, row)])[0]
    elif len(context) > len(prompt):
        written = step_char_spans(context[len(prompt) :])
        if written:
            _, offsets = extraction.encode_with_offsets(llm.tokenizer, context)
            start = len(prompt) + written[0][0]
            q_before = token_spans(offsets, [(start, start + 1)])[0][0]
    return qspan, q_before


def _plan(llm, spec, row, context, prompt_ids, kept_ids, text, spans, target, stats, question=None) -> _Row | None:
    """How to pool one generated row: `spans` are step character spans in `text`, what `kept_ids` decode to;
    question: the context's (qspan, q_before) when known (`_question_tokens`), else taken with `context` as prompt."""
    if not spans:
        stats.miss("no text")
        return None
    try:
        gen_spans = token_spans(generated_offsets(llm.tokenizer, kept_ids, text), spans)
    except ValueError:
        stats.miss("a step no generated token covers")
        return None
    qspan, q_before = question if question is not None else _question_tokens(llm, spec, context, context, row)
    return _Row(row, target, prompt_ids, len(kept_ids), gen_spans, qspan, q_before)


def _extra_state(llm, layer_pos: int, result, attention_mask, new):
    """The layer's state of the last sampled token of each row, (B, 1, D) float16, by one decode step on the
    generation's cache (positions from the attention mask, as `generate` computes them)."""
    import torch

    T = new.shape[1]
    mask = torch.cat([attention_mask, torch.ones_like(new)], dim=1)  # (B, P + T)
    pos = mask.sum(dim=1, keepdim=True) - 1  # (B, 1)
    h = extraction.layer_output(
        llm,
        new[:, T - 1 :],
        mask,
        layer_pos,
        past_key_values=result.past_key_values,
        position_ids=pos,
        use_cache=True,
    )  # (B, 1, D)
    return h.to(torch.float16)


def pool_captured(llm, spec: CaptureSpec, batch, prompts, chains, stats: CaptureStats) -> None:
    """Give each chain of one generate call its `latents` (an `Extracted`) from the recorded states.

    batch: the generate call's `_Batch` (rows' prompt ids, left-padded width, new token ids (B, T), the
    recorder's states, the generate result and attention mask for the extra step).
    """
    tic = time.perf_counter()
    rows = []
    for r, chain in enumerate(chains):
        kept_ids = batch.new[r, : chain.num_new_tokens].tolist()
        spans = step_char_spans(chain.text)
        planned = _plan(llm, spec, r, prompts[r], batch.prompt_ids[r], kept_ids, chain.text, spans, chain, stats)
        if planned is not None:
            rows.append(planned)
    _pool_rows(llm, spec, batch, rows, stats, tic)


def pool_lines(llm, spec: CaptureSpec, batch, context: str, prompt: str, lines, kept, stats: CaptureStats) -> None:
    """Give each sampled next line (`NextStep`, llm.generation) of one `next_steps` call the `latents` of the
    step it states: H (1, D') pooled over that step's generated tokens, q from the context's prompt part.

    kept: per row, (the text the kept generated tokens decode to, where the line starts in it).
    """
    tic = time.perf_counter()
    rows, question = [], _question_tokens(llm, spec, context, prompt, 0)  # one context for every row
    for r, (line, (text, at)) in enumerate(zip(lines, kept, strict=True)):
        span = None if line.is_answer else line_step_span(text[at:])
        if span is None:
            continue  # nothing to pool: the answer line or a blank one (not a miss, NUDGE takes no step from it)
        kept_ids = batch.new[r, : line.num_tokens].tolist()
        spans = [(at + span[0], at + span[1])]
        planned = _plan(llm, spec, r, context, batch.prompt_ids[r], kept_ids, text, spans, line, stats, question)
        if planned is not None:
            rows.append(planned)
    _pool_rows(llm, spec, batch, rows, stats, tic)


def _pool_rows(llm, spec: CaptureSpec, batch, rows: list[_Row], stats: CaptureStats, tic: float) -> None:
    import numpy as np
    import torch

    extra_before = stats.extra_step_s
    width, new = batch.width, batch.new  # new: (B, T)
    T = new.shape[1]
    if not rows:
        stats.pool_s += time.perf_counter() - tic
        return
    states = batch.states  # (B, width + T - 1, D): the last sampled token was never fed
    layer_pos = extraction.resolve_layer(spec.layer_idx, llm.num_layers)
    if any(e >= T for r in rows for _, e in r.gen_spans):  # a step ends on the never-fed token
        if spec.finish_last:
            t0 = time.perf_counter()
            last = _extra_state(llm, layer_pos, batch.result, batch.attention_mask, new.to(llm.device))
            states = torch.cat([states, last.to(states.device)], dim=1)  # (B, width + T, D)
            stats.extra_step_s += time.perf_counter() - t0
            stats.extra_steps += 1
        else:
            kept = []
            for r in rows:
                r.gen_spans = [(s, min(e, T - 1)) for s, e in r.gen_spans]
                if any(e <= s for s, e in r.gen_spans):
                    stats.miss("a one-token step on the never-fed last token")
                else:
                    kept.append(r)
            rows = kept
            if not rows:
                stats.pool_s += time.perf_counter() - tic
                return
    padded = [[(width + s, width + e) for s, e in r.gen_spans] for r in rows]  # into the left-padded states
    pooled = extraction._pool(states[[r.row for r in rows]], padded, spec.pooling)  # list of (J, D') float32
    for r, H in zip(rows, pooled, strict=True):
        L = len(r.prompt_ids)
        if r.qspan is not None:
            qs, qe = r.qspan
            q = extraction._span_state(states[[r.row]], 0, (width - L + qs, width - L + qe), spec.pooling)
        elif r.q_before is not None:
            q = extraction._question_state(llm, states[[r.row]], 0, width - L + r.q_before, spec.pooling)
        else:
            q = extraction._question_state(llm, states[[r.row]], 0, width + r.gen_spans[0][0], spec.pooling)
        kept_ids = new[r.row, : r.kept].tolist()
        r.target.latents = extraction.Extracted(
            H=H.cpu().numpy().astype(np.float16),
            token_ids=list(r.prompt_ids) + kept_ids,
            step_spans=[(L + s, L + e) for s, e in r.gen_spans],
            q=q.cpu().numpy().astype(np.float16) if q is not None else None,
        )
        stats.chains += 1
    stats.pool_s += time.perf_counter() - tic - (stats.extra_step_s - extra_before)
