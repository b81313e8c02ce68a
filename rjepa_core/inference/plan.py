"""PLAN mode (SPEC F11): R-JEPA proposes the next steps as latents, the decoder says them in words.

    >>> result = plan(student, model, decoder, prompt, ["3 + 4 = 7"], PlanConfig(k=2))   # doctest: +SKIP
    >>> [(p.index, p.decoded) for p in result.plan], result.final_answer                   # doctest: +SKIP

Given the question and steps 1..m (m >= 0; m = 0 needs a checkpoint with a question token), R-JEPA
predicts the latents of steps m+1..m+k at once (all masked, the given steps and the question as
context) and the latent decoder (F12) verbalises each prediction. The plan steps then enter the
chain either as decoded (`verbalise="decoder"`) or as the line the student writes when its prompt
carries the decoded drafts as a hint (`verbalise="student"`); with `continue_generation`, the
student finishes the chain after them. Each plan step reports the cosine between the latent of the
step as it entered the chain and R-JEPA's prediction: how faithfully the words carry the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rjepa_core.llm.generation import states_answer
from rjepa_core.segmentation import extract_final_answer, segment

VERBALISE = ("decoder", "student")


@dataclass(frozen=True)
class PlanConfig:
    k: int = 3  # steps planned
    verbalise: str = "decoder"  # decoder: the decoded text is the step | student: the student writes it, hinted
    continue_generation: bool = True  # the student finishes the chain after the plan
    max_new_tokens: int = 160  # tokens of the continuation (and of the student's plan lines, 64 each at most)
    temperature: float = 0.0  # the student's lines (0 = greedy)
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"plan k must be >= 1, got {self.k}")
        if self.verbalise not in VERBALISE:
            raise ValueError(f"plan verbalise must be one of {VERBALISE}, got {self.verbalise!r}")
        if self.max_new_tokens < 1 or self.temperature < 0:
            raise ValueError("plan max_new_tokens must be >= 1 and temperature >= 0")


@dataclass
class PlanStep:
    index: int  # step position (0-based) in the chain
    decoded: str  # the decoder's text of R-JEPA's predicted latent
    text: str  # the step as it entered the chain
    cosine: float | None  # latent of `text` in the chain vs the predicted latent (student hidden space)


@dataclass
class PlanResult:
    given_steps: list[str]
    plan: list[PlanStep]
    text: str  # the whole chain: given steps, plan steps, continuation
    steps: list[str]
    final_answer: str | None
    tokens_used: int  # tokens the student generated (plan lines and continuation)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lines(steps: Sequence[str], start: int = 0) -> str:
    return "".join(f"Step {start + i + 1}: {s}\n" for i, s in enumerate(steps))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def hint_text(drafts: Sequence[str], start: int) -> str:
    """The hint added to the question when the student verbalises the plan."""
    return "\n\nA plan for the next steps:\n" + "\n".join(f"Step {start + i + 1}: {d}" for i, d in enumerate(drafts))


def plan(
    student: Any,
    model: Any,
    decoder: Any,
    prompt: str,
    given_steps: Sequence[str] = (),
    cfg: PlanConfig = PlanConfig(),
    *,
    domain: str | None = None,
    layer_idx: int | None = None,
    pooling: str | None = None,
    question_pooling: str | None = None,
    hinted_prompt: Callable[[str], str] | None = None,
) -> PlanResult:
    """Plan k steps after `given_steps` (see the module docstring).

    hinted_prompt: builds the student's prompt with a hint appended to the question (needed for
    verbalise="student"; the caller knows how the question was asked).
    """
    from rjepa_core.jepa.scoring import predict_masked

    given = [s.strip() for s in given_steps]
    if any(not s for s in given):
        raise ValueError("given steps must not be blank")
    m = len(given)
    if m + cfg.k > model.cfg.max_steps:
        raise ValueError(f"{m} given + {cfg.k} planned steps exceed the model's max_steps={model.cfg.max_steps}")
    if not model.cfg.question_token and m == 0:
        raise ValueError("this checkpoint has no question token: give at least one step to plan from")
    if cfg.verbalise == "student" and hinted_prompt is None:
        raise ValueError("verbalise='student' needs hinted_prompt (how to ask the question with a hint)")
    if decoder.latent_dim != model.hidden_size:
        raise ValueError(
            f"the decoder reads latents of width {decoder.latent_dim} but the checkpoint predicts {model.hidden_size}:"
            " use the decoder of the checkpoint's student and dataset version"
        )
    how = {"layer_idx": layer_idx, "pooling": pooling, "question_pooling": question_pooling}
    ex = student.extract([(prompt, given or ["…"])], **how)[0]
    q = np.asarray(ex.q, dtype=np.float32) if ex.q is not None and model.cfg.question_token else None
    H = np.asarray(ex.H, dtype=np.float32)[:m] if m else np.zeros((0, model.hidden_size), dtype=np.float32)
    _, pred = predict_masked(model, H, list(range(m, m + cfg.k)), domain, q)  # (k, hidden)
    drafts = decoder.decode(pred, student.tokenizer)
    text, used, notes = _lines(given), 0, []
    planned: list[str] = []
    drafted: list[str] = []
    if cfg.verbalise == "decoder":
        for i, d in enumerate(drafts):
            if not d:
                notes.append(f"the decoder wrote nothing for step {m + i + 1}: the plan stops there")
                break
            planned.append(d)
            drafted.append(d)
        text += _lines(planned, m)
    else:
        context = hinted_prompt(hint_text(drafts, m))
        for i, d in enumerate(drafts):
            line = student.next_steps(context + text, 1, cfg.temperature, 64, cfg.seed)[0]
            used += line.num_tokens
            step = "" if line.is_answer else " ".join(s.text for s in segment(line.text))
            if not step:
                notes.append(f"the student answered (or stopped) instead of writing step {m + i + 1}")
                if line.is_answer:
                    text += line.text + "\n"
                break
            planned.append(step)
            drafted.append(d)
            text += line.text + "\n"
            if line.ended:
                break
    cosines: list[float | None] = [None] * len(planned)
    if planned:
        Hp = np.asarray(student.extract([(prompt, [*given, *planned])], **how)[0].H, np.float32)
        cosines = [_cos(Hp[m + i], pred[i]) for i in range(len(planned))]
    steps = [*given, *planned]
    answered = states_answer(text)  # an explicit answer line (extract_final_answer falls back to the last number)
    if cfg.continue_generation and not answered:
        chain = student.generate(
            [prompt + text], k=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed
        )[0][0]
        used += chain.num_new_tokens
        text += chain.text
        steps += list(chain.steps)
    text = text.rstrip()
    plan_steps = [PlanStep(m + i, drafted[i], planned[i], cosines[i]) for i in range(len(planned))]
    return PlanResult(given, plan_steps, text, steps, extract_final_answer(text), used, notes)
