"""NUDGE mode (SPEC F11): step-wise generation with the world model in the loop.

    >>> cfg = NudgeConfig(m=4, budget_tokens=600)
    >>> th = NudgeThreshold.from_dict(ck.meta["nudge"])                       # doctest: +SKIP
    >>> result = nudge(student, scorer, prompt, cfg, threshold=th)             # doctest: +SKIP
    >>> [(t.index, t.nudged, t.reason) for t in result.trace]                  # doctest: +SKIP

The student writes one line (one step) at a time. After each step, R-JEPA predicts that step from
the question latent and the steps before it; the step's **surprise** is the distance between that
prediction and the step's own latent (`JEPAScorer.last_step_surprise`). When the surprise is above the
threshold for its position, the step is regenerated: M alternative lines are sampled from the same
context, and the one whose latent is closest (cosine) to R-JEPA's prediction of the step, in the
student's hidden space, is kept — the original competes too, so a nudge never keeps a step farther
from the prediction than the one written. With `alpha > 0` and a latent decoder, the alternatives are
also sampled with a logit bias toward the tokens of the decoded prediction, `alpha_eff · 1[token]`,
where `alpha_eff = alpha · clip(surprise / threshold − 1, 0, 1)` grows with how far above the
threshold the step was (annealed by the surprise).

The threshold is fitted on the validation split (`fit_threshold`): per step position, a quantile of
the last-step surprise of *valid* chains' prefixes, so "surprising" means "more surprising than
that share of lawful steps at this position". `budget_tokens` caps the tokens generated in all
(the chain plus every alternative): a step is nudged only while the budget left covers M more lines
of its length; once spent, the chain goes on without nudges. Every step's decision and its reason
are in `NudgeResult.trace`.

Step latents: when the student captures latents while sampling (registry `latents_from_sampling`, the
default) each line's step latent is recorded during the `next_steps` call that wrote it, and a chain's
latents are its kept lines' (earlier steps' from when they were written): no teacher-forced forward in
the loop. `NudgeConfig(teacher_forced=True)` re-extracts the chain prefix after every line instead
(`student.extract`, as before), which is also the fallback for a line whose latent could not be
captured (`NudgeResult.latent_fallbacks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rjepa_core.segmentation import extract_final_answer, segment

MIN_PER_POSITION = 20  # positions with fewer fitted steps use the overall threshold


@dataclass(frozen=True)
class NudgeConfig:
    m: int = 4  # alternatives sampled for a surprising step
    alpha: float = 0.0  # logit bias toward the decoded prediction's tokens (needs a decoder); 0 = off
    budget_tokens: int = 640  # tokens generated in all (chain + alternatives)
    max_new_tokens: int = 160  # tokens of the chain itself
    step_tokens: int = 64  # cap per line
    max_steps: int = 12  # lines before the chain is cut
    temperature: float = 0.0  # the chain's own steps (0 = greedy, as OFF)
    alt_temperature: float = 0.8  # the alternatives
    seed: int | None = 0
    # re-extract each chain prefix teacher-forced after every line, even when the student captures latents
    # while sampling (`latents_from_sampling`); false: each line's step latent comes from its own sampling call
    teacher_forced: bool = False

    def __post_init__(self) -> None:
        for name in ("m", "budget_tokens", "max_new_tokens", "step_tokens", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"nudge {name} must be >= 1, got {getattr(self, name)}")
        if self.alpha < 0:
            raise ValueError(f"nudge alpha must be >= 0, got {self.alpha}")
        if self.temperature < 0 or self.alt_temperature < 0:
            raise ValueError("nudge temperatures must be >= 0 (0 = greedy)")


@dataclass
class NudgeThreshold:
    """Surprise thresholds per step position (and overall), fitted on valid validation chains."""

    by_position: list[float]
    overall: float
    quantile: float = 0.9
    n_steps: int = 0
    source: str = ""

    def at(self, position: int) -> float:
        return self.by_position[position] if 0 <= position < len(self.by_position) else self.overall

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NudgeThreshold:
        return cls(
            [float(x) for x in d["by_position"]],
            float(d["overall"]),
            float(d.get("quantile", 0.9)),
            int(d.get("n_steps", 0)),
            str(d.get("source", "")),
        )

    @classmethod
    def constant(cls, value: float, source: str = "given") -> NudgeThreshold:
        return cls([], float(value), float("nan"), 0, source)


def prefix_surprises(scorer: Any, chains: Sequence[tuple[np.ndarray, np.ndarray | None, str | None]]):
    """(position, surprise) of every step of every chain, each predicted from the steps before it."""
    prefixes, qs, doms, pos = [], [], [], []
    for H, q, domain in chains:
        H = np.asarray(H, dtype=np.float32)
        for j in range(min(H.shape[0], scorer.model.cfg.max_steps)):
            prefixes.append(H[: j + 1])
            qs.append(q)
            doms.append(domain)
            pos.append(j)
    return list(zip(pos, scorer.last_step_surprise(prefixes, doms, qs), strict=True))


def fit_threshold(
    scorer: Any,
    chains: Sequence[tuple[np.ndarray, np.ndarray | None, str | None]],
    quantile: float = 0.9,
    source: str = "",
) -> NudgeThreshold:
    """Per-position `quantile` of the last-step surprise over the prefixes of lawful (valid) chains."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    pairs = prefix_surprises(scorer, chains)
    if not pairs:
        raise ValueError("fit_threshold needs at least one chain with steps")
    values = np.array([s for _, s in pairs])
    overall = float(np.quantile(values, quantile))
    by_pos: list[float] = []
    for p in range(max(p for p, _ in pairs) + 1):
        at = values[[i for i, (q, _) in enumerate(pairs) if q == p]]
        if len(at) < MIN_PER_POSITION:
            break
        by_pos.append(float(np.quantile(at, quantile)))
    return NudgeThreshold(by_pos, overall, quantile, len(values), source)


@dataclass
class Alternative:
    text: str
    cosine: float | None  # to R-JEPA's prediction of the step (student hidden space)
    surprise: float | None
    num_tokens: int


@dataclass
class StepTrace:
    index: int  # step position (0-based)
    text: str  # the step kept
    surprise: float  # surprise of the step first written
    threshold: float
    nudged: bool  # the step was regenerated and another line kept
    reason: str
    original: str | None = None  # the step first written, when it was replaced
    chosen: int | None = None  # index in `alternatives` of the kept line (0 = the original)
    alternatives: list[Alternative] = field(default_factory=list)  # the original first, then the samples
    predicted_text: str | None = None  # R-JEPA's prediction of the step, decoded (with a decoder)
    alpha_eff: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NudgeResult:
    text: str  # the chain as written (step lines + answer line)
    steps: list[str]
    final_answer: str | None
    trace: list[StepTrace]
    tokens_used: int  # all generated tokens, alternatives included
    chain_tokens: int  # tokens of the kept chain
    latents: str = "teacher_forced"  # where step latents came from: captured (while sampling) | teacher_forced
    latent_fallbacks: int = 0  # lines whose latent could not be captured: extracted teacher-forced instead
    # (steps, D') float32 latents of the kept steps, as NUDGE scored them (None when no step was kept)
    H: np.ndarray | None = None
    q: np.ndarray | None = None  # the question latent NUDGE scored with (None without one)

    @property
    def nudged_steps(self) -> list[int]:
        return [t.index for t in self.trace if t.nudged]


def _step_text(line: str) -> str:
    """The step a generated line states ("Step 3: ..." marker dropped; several sentences stay one step)."""
    return " ".join(s.text for s in segment(line)) if line.strip() else ""


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class _World:
    """The student and R-JEPA around one problem: latents of chains, surprise and prediction of the newest step.

    capture: a `CaptureSpec` when step latents come from sampling (`next_steps(capture=...)`), else None.
    """

    def __init__(
        self, student, scorer, prompt: str, domain: str | None, layer_idx, pooling, question_pooling, capture=None
    ) -> None:
        self.student, self.scorer, self.prompt, self.domain = student, scorer, prompt, domain
        self.layer_idx, self.pooling, self.question_pooling = layer_idx, pooling, question_pooling
        self.capture = capture
        self.q: np.ndarray | None = None
        self.H = np.zeros((0, 0), np.float32)  # (j, D') latents of the steps kept so far
        self.fallbacks = 0

    def latents(self, chains: Sequence[list[str]]) -> list[np.ndarray]:
        """Teacher-forced latents of whole chains (prompt + the rendered steps)."""
        ex = self.student.extract(
            [(self.prompt, steps) for steps in chains],
            layer_idx=self.layer_idx,
            pooling=self.pooling,
            question_pooling=self.question_pooling,
        )
        if self.q is None and ex and ex[0].q is not None:
            self.q = np.asarray(ex[0].q, dtype=np.float32)
        return [np.asarray(e.H, dtype=np.float32) for e in ex]

    def with_lines(self, steps: list[str], lines: Sequence[Any]) -> list[np.ndarray]:
        """Latents of the chain `steps` + each line's step: the kept steps' then the line's captured latent;
        teacher-forced (`latents`) for every line without one, and for all lines when not capturing."""
        out: list[np.ndarray | None] = [None] * len(lines)
        if self.capture is not None:
            for i, line in enumerate(lines):
                lat = line.latents
                if lat is None:
                    continue
                if self.q is None and lat.q is not None:
                    self.q = np.asarray(lat.q, dtype=np.float32)
                h = np.asarray(lat.H, dtype=np.float32)  # (1, D')
                out[i] = np.concatenate([self.H, h]) if len(self.H) else h
        missing = [i for i, h in enumerate(out) if h is None]
        if missing:
            if self.capture is not None:
                self.fallbacks += len(missing)
            forced = self.latents([[*steps, _step_text(lines[i].text)] for i in missing])
            for i, h in zip(missing, forced, strict=True):
                # capturing: only the new step is teacher-forced, the kept steps keep the latents they were written with
                out[i] = np.concatenate([self.H, h[-1:]]) if self.capture is not None and len(self.H) else h
        return out  # type: ignore[return-value]

    def surprise(self, Hs: Sequence[np.ndarray]) -> list[float]:
        return self.scorer.last_step_surprise(list(Hs), [self.domain] * len(Hs), [self.q] * len(Hs))

    def predicted(self, H_before: np.ndarray) -> np.ndarray:
        from rjepa_core.jepa.scoring import predict_masked

        model = self.scorer.model
        q = self.q if model.cfg.question_token else None
        _, hidden = predict_masked(model, H_before, [H_before.shape[0]], self.domain, q)
        return hidden[0]


def latent_agreement(student, prompt: str, result: NudgeResult, layer_idx=None, pooling=None, question_pooling=None):
    """Cosine of each kept step's latent as NUDGE scored it (`result.H`) with the teacher-forced latent of the
    same step (prompt + the kept steps rendered "Step k: ..."): 1 where both saw the same tokens. [] without steps."""
    if result.H is None or not result.steps:
        return []
    ex = student.extract(
        [(prompt, result.steps)], layer_idx=layer_idx, pooling=pooling, question_pooling=question_pooling
    )[0]
    return [_cos(a, np.asarray(b, np.float32)) for a, b in zip(result.H, ex.H, strict=True)]


def _capture_spec(student, cfg: NudgeConfig, layer_idx, pooling, question_pooling):
    """The CaptureSpec NUDGE samples with, None when it extracts teacher-forced."""
    spec = getattr(student, "spec", None)
    if cfg.teacher_forced or not getattr(spec, "latents_from_sampling", False):
        return None
    from rjepa_core.llm.capture import CaptureSpec

    return CaptureSpec(layer_idx=layer_idx, pooling=pooling, question_pooling=question_pooling)


def nudge(
    student: Any,
    scorer: Any,
    prompt: str,
    cfg: NudgeConfig = NudgeConfig(),
    *,
    threshold: NudgeThreshold,
    domain: str | None = None,
    layer_idx: int | None = None,
    pooling: str | None = None,
    question_pooling: str | None = None,
    decoder: Any = None,
) -> NudgeResult:
    """Write a chain step by step after `prompt`, regenerating surprising steps (see the module docstring)."""
    if cfg.alpha > 0 and decoder is None:
        raise ValueError("nudge alpha > 0 biases toward the decoded prediction: it needs a latent decoder")
    capture = _capture_spec(student, cfg, layer_idx, pooling, question_pooling)
    world = _World(student, scorer, prompt, domain, layer_idx, pooling, question_pooling, capture)
    sample = {"capture": capture, "prompt": prompt} if capture is not None else {}
    max_steps = min(cfg.max_steps, scorer.model.cfg.max_steps)
    text, steps, trace = "", [], []
    used = chain_tokens = 0
    seed = cfg.seed
    while chain_tokens < cfg.max_new_tokens and len(steps) < max_steps:
        limit = min(cfg.step_tokens, cfg.max_new_tokens - chain_tokens)
        line = student.next_steps(prompt + text, 1, cfg.temperature, limit, seed, **sample)[0]
        seed = None if seed is None else seed + 1
        used += line.num_tokens
        step = "" if line.is_answer else _step_text(line.text)
        if not step:  # the answer line, or nothing: the chain ends here
            if line.text:
                text += line.text + "\n"
                chain_tokens += line.num_tokens
            break
        j = len(steps)
        H = world.with_lines(steps, [line])[0]
        s = world.surprise([H])[0]
        t = threshold.at(j)
        entry = StepTrace(j, step, s, t, False, "")
        kept_line, kept_tokens, kept_ended = line.text, line.num_tokens, line.ended
        if s <= t:
            entry.reason = f"surprise {s:.3f} at or below the threshold {t:.3f} for step {j + 1}: kept"
        elif cfg.budget_tokens - used < cfg.m * max(line.num_tokens, 1):
            entry.reason = (
                f"surprise {s:.3f} above the threshold {t:.3f}, but the token budget left "
                f"({max(cfg.budget_tokens - used, 0)}) does not cover {cfg.m} alternatives: kept"
            )
        else:
            pred = world.predicted(H[:j])
            bias, entry.alpha_eff = None, 0.0
            if decoder is not None:
                entry.predicted_text = decoder.decode(pred[None], student.tokenizer)[0]
                if cfg.alpha > 0:
                    entry.alpha_eff = cfg.alpha * float(np.clip(s / t - 1 if t > 0 else 1.0, 0.0, 1.0))
                    bias = {i: entry.alpha_eff for i in set(decoder.generate_ids(pred[None])[0])} or None
            alts = student.next_steps(prompt + text, cfg.m, cfg.alt_temperature, limit, seed, token_bias=bias, **sample)
            seed = None if seed is None else seed + cfg.m
            used += sum(a.num_tokens for a in alts)
            lines = [line, *[a for a in alts if not a.is_answer and _step_text(a.text)]]
            Hs = [H, *world.with_lines(steps, lines[1:])] if len(lines) > 1 else [H]
            surprises = [s, *world.surprise(Hs[1:])] if len(Hs) > 1 else [s]
            cosines = [_cos(h[j], pred) for h in Hs]
            entry.alternatives = [
                Alternative(_step_text(a.text), c, u, a.num_tokens)
                for a, c, u in zip(lines, cosines, surprises, strict=True)
            ]
            best = int(np.argmax(cosines))
            entry.chosen = best
            if best == 0:
                entry.reason = (
                    f"surprise {s:.3f} above the threshold {t:.3f}: none of {len(lines) - 1} alternatives is closer "
                    f"to the predicted step than the original (cosine {cosines[0]:.3f}): kept"
                )
            else:
                entry.nudged, entry.original = True, step
                entry.text = step = entry.alternatives[best].text
                kept_line, kept_tokens, kept_ended = lines[best].text, lines[best].num_tokens, lines[best].ended
                H = Hs[best]
                entry.reason = (
                    f"surprise {s:.3f} above the threshold {t:.3f}: alternative {best} of {len(lines) - 1} is the "
                    f"closest to the predicted step (cosine {cosines[best]:.3f} vs {cosines[0]:.3f} for the "
                    f"original; its surprise {surprises[best]:.3f})"
                )
        trace.append(entry)
        steps.append(step)
        world.H = H
        text += kept_line + "\n"
        chain_tokens += kept_tokens
        if kept_ended:
            break
    text = text.rstrip()
    return NudgeResult(
        text,
        steps,
        extract_final_answer(text) if text else None,
        trace,
        used,
        chain_tokens,
        latents="captured" if capture is not None else "teacher_forced",
        latent_fallbacks=world.fallbacks,
        H=world.H if len(world.H) else None,
        q=world.q,
    )
