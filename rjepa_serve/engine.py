"""The model work behind the routes, run on the model thread: score, predict, rerank, chat (SPEC F10, F11).

    >>> # with `ms` a loaded ModelState (see state.load_model_state):
    >>> # out = rank(ms, candidates_from_texts(ms, "2+3?", ["Step 1: 2+3=5\\nAnswer: 5"]), ms.weights, "math")

Functions here take plain numpy/str inputs and a ModelState, raise ValueError for anything the
client can fix (the routes turn it into a 422), and return plain dicts/lists ready for the schemas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rjepa_serve.state import ModelState


@dataclass
class Ranked:
    best_index: int  # chosen candidate
    order: list[int]  # best first; unscorable candidates last
    outs: list[dict[str, Any]]  # CandidateOut fields, in input order


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def score_chains(
    ms: ModelState,
    seqs: list[np.ndarray],
    domains: list[str | None],
    questions: list[np.ndarray | None] | None = None,
) -> list[dict[str, Any]]:
    scores = ms.scorer.score(seqs, domains, questions)
    return [
        {
            "jepa_loss": float(s.jepa_loss),
            "step_surprise": [float(x) for x in s.step_surprise],
            "step_z": s.step_z,
            "score01": _finite(s.score01),
            "most_surprising_step": int(s.most_surprising_step),
            "first_unlawful_step": s.first_unlawful_step,
        }
        for s in scores
    ]


@dataclass(frozen=True)
class TextChain:
    question: str
    steps: list[str]  # non-blank, already cut by the segmenter when the client sent raw text
    domain: str | None
    final_answer: str | None = None


def text_chain(question: str, steps: list[str] | None, text: str | None, domain: str | None, where: str) -> TextChain:
    """A client's chain as text -> its steps; a ValueError saying what to send when no step is found."""
    from rjepa_core.segmentation import extract_final_answer, segment

    if steps is not None:
        return TextChain(question, [t.strip() for t in steps], domain)
    found = [seg.text for seg in segment(text)]
    if not found:
        raise ValueError(
            f"{where}: no step found in `text` (only a final answer?): write the reasoning as 'Step 1: ...' lines "
            "or one step per line, or send `steps`"
        )
    return TextChain(question, found, domain, extract_final_answer(text))


def score_texts(ms: ModelState, chains: list[TextChain]) -> list[dict[str, Any]]:
    """Step latents of each chain from the served student (the checkpoint's prompt, layer and pooling), scored.

    Each result is `score_chains`'s plus the steps scored and the most surprising step's text.
    """
    student = _require_student(ms)
    items = [(ask(ms, c.question), c.steps) for c in chains]
    extracted = student.extract(items, layer_idx=ms.layer_idx, pooling=ms.pooling, question_pooling=ms.question_pooling)
    out = score_chains(ms, [ex.H for ex in extracted], [c.domain for c in chains], [ex.q for ex in extracted])
    for r, c in zip(out, chains, strict=True):
        r.update(steps=list(c.steps), most_surprising_text=c.steps[r["most_surprising_step"]])
        r["final_answer"] = c.final_answer
    return out


def predict(
    ms: ModelState, H: np.ndarray, indices: list[int], domain: str | None, question: np.ndarray | None = None
) -> tuple[list[int], Any, Any]:
    from rjepa_core.jepa.scoring import predict_masked

    idx = sorted(set(indices))
    pred_jepa, pred_hidden = predict_masked(ms.model, H, idx, domain, question)
    return idx, pred_jepa.tolist(), pred_hidden.tolist()


def prompt_examples(ms: ModelState) -> list[Any]:
    """The worked examples the checkpoint's latents were extracted under (meta "prompt"; none for older ones)."""
    from rjepa_core.llm.prompting import Example

    return [Example.from_dict(d) for d in (ms.meta.get("prompt") or {}).get("few_shot") or []]


def ask(ms: ModelState, statement: str) -> str:
    """The student's prompt for a question, as the checkpoint's training data asked it."""
    return _require_student(ms).prompt_for(statement, prompt_examples(ms))


def _require_student(ms: ModelState) -> Any:
    if ms.student is None:
        raise RuntimeError(ms.student_error or "no student LLM is loaded")
    return ms.student


def _logprobs(student: Any, prompt: str, texts: dict[int, str]) -> dict[int, float | None]:
    """Log-probs of the texts after the prompt; a text the student cannot score alone gets None."""
    keys = list(texts)
    try:
        return dict(zip(keys, student.logprobs([prompt] * len(keys), [texts[k] for k in keys]), strict=True))
    except (StopIteration, ValueError):
        out: dict[int, float | None] = {}
        for k in keys:
            try:
                out[k] = student.logprobs([prompt], [texts[k]])[0]
            except (StopIteration, ValueError):
                out[k] = None
        return out


def candidates_from_texts(ms: ModelState, statement: str, texts: list[str]) -> tuple[str, list[Any]]:
    """Candidates (steps, final answer, log-prob under the student) from given chain texts."""
    from rjepa_core.inference.rerank import Candidate
    from rjepa_core.segmentation import extract_final_answer, segment

    student = _require_student(ms)
    prompt = ask(ms, statement)
    # blank texts have no token to score (and make the student's logprobs fail): they get no log-prob
    filled = [i for i, t in enumerate(texts) if t.strip()]
    logps = _logprobs(student, prompt, {i: texts[i] for i in filled})
    out = []
    for i, text in enumerate(texts):
        steps = [s.text for s in segment(text)] if text.strip() else []
        n_tok = len(student.tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else 0
        lp = logps.get(i)
        out.append(
            Candidate(
                text, steps, float(lp) if lp is not None else None, None, extract_final_answer(text), n_tok or None
            )
        )
    return prompt, out


def capture_spec(ms: ModelState) -> Any:
    """What sampling records for RERANK: the checkpoint's layer, pooling and question latent."""
    from rjepa_core.llm.capture import CaptureSpec

    return CaptureSpec(layer_idx=ms.layer_idx, pooling=ms.pooling, question_pooling=ms.question_pooling)


def candidates_from_samples(
    ms: ModelState, statement: str, k: int, temperature: float, max_new_tokens: int, seed: int | None
) -> tuple[str, list[Any]]:
    """K chains sampled from the student, with their step latents captured while sampling (so `rank` runs
    no second forward over them; a chain whose latents could not be captured is extracted there)."""
    from rjepa_core.inference.rerank import Candidate

    student = _require_student(ms)
    prompt = ask(ms, statement)
    capture = capture_spec(ms) if student.spec.latents_from_sampling else None
    chains = student.generate(
        [prompt], k=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, capture=capture
    )[0]
    out = []
    for c in chains:
        lat = c.latents if c.latents is not None and len(c.latents.H) == len(c.steps) else None
        H, Q = (lat.H, lat.q) if lat is not None else (None, None)
        out.append(Candidate(c.text, list(c.steps), c.logprob, H, c.final_answer, c.num_new_tokens, Q))
    return prompt, out


def vote_tau(ms: ModelState) -> float:
    """The JEPA vote's temperature in loss units: the checkpoint's tau_rel (default 0.5) x its calibration std."""
    from rjepa_core.inference.vote import DEFAULT_TAU_REL, relative_tau

    tau_rel = float((ms.meta.get("jepa_vote") or {}).get("tau_rel", DEFAULT_TAU_REL))
    cal = getattr(ms.scorer, "calibration", None)
    return relative_tau(tau_rel, cal.std if cal is not None else None)


def _vote_order(ms: ModelState, selection: str, cands: list[Any], scorable: list[int], scores, order: list[int]):
    """(order with the vote's choice first, per-candidate vote share) for a JEPA vote selection."""
    from rjepa_core.inference.vote import filtered_majority, jepa_vote, vote_losses

    answers = [cands[i].final_answer for i in scorable]
    losses = vote_losses(
        selection,
        [float(s.jepa_loss) for s in scores],
        [list(s.step_surprise) for s in scores],
        [s.step_z for s in scores],
    )
    if selection == "jepa_vote":
        result = jepa_vote(answers, losses, vote_tau(ms))
    else:
        result = filtered_majority(answers, losses, logprobs=[cands[i].logprob for i in scorable])
    best = scorable[result.best_index]
    share = {scorable[j]: float(x) for j, x in enumerate(result.answer_share)}
    return [best] + [i for i in order if i != best], share


def rank(
    ms: ModelState, prompt: str, cands: list[Any], weights: Any, domain: str | None, selection: str = "composite"
) -> Ranked:
    """Score the candidates that have steps, rerank; unscorable ones go last. Candidates that came with
    latents (captured while sampling) are scored from them; the others' latents are extracted first.

    selection: "composite" (the score's order), or a JEPA vote (jepa_vote, jepa_filter_majority,
    jepa_last_filter_majority, jepa_excess_filter_majority): the vote's chosen chain first, then the
    composite order.
    """
    from rjepa_core.inference.rerank import rerank

    student = _require_student(ms)
    notes: dict[int, str] = {}
    scorable = [i for i, c in enumerate(cands) if c.steps]
    for i, c in enumerate(cands):
        if not c.steps:
            notes[i] = "no step text to score"
        elif len(c.steps) > ms.max_steps:
            notes[i] = f"scored its first {ms.max_steps} of {len(c.steps)} steps (the model's max_steps)"
    if scorable:
        questions = {i: cands[i].Q for i in scorable if cands[i].H is not None}
        for i in questions:
            cands[i].H = cands[i].H[: ms.max_steps]
        todo = [i for i in scorable if cands[i].H is None]
        if todo:
            items = [(prompt, cands[i].steps[: ms.max_steps]) for i in todo]
            extracted = student.extract(
                items, layer_idx=ms.layer_idx, pooling=ms.pooling, question_pooling=ms.question_pooling
            )
            for i, ex in zip(todo, extracted, strict=True):
                cands[i].H, questions[i] = ex.H, ex.q
        scores = ms.scorer.score(
            [cands[i].H for i in scorable], [domain] * len(scorable), [questions[i] for i in scorable]
        )
        result = rerank([cands[i] for i in scorable], scores, weights)
        order = [scorable[j] for j in result.order]
        details = {scorable[j]: (d, scores[j]) for j, d in enumerate(result.details)}
        share: dict[int, float] = {}
        if selection != "composite":
            order, share = _vote_order(ms, selection, cands, scorable, scores, order)
    else:
        order, details, share = [], {}, {}
    order += [i for i in range(len(cands)) if i not in details]
    best = order[0]
    outs = []
    for i, c in enumerate(cands):
        d, s = details.get(i, (None, None))
        outs.append(
            {
                "index": i,
                "text": c.text,
                "steps": list(c.steps),
                "final_answer": c.final_answer,
                "logprob": _finite(c.logprob),
                "num_tokens": c.num_tokens,
                "jepa_loss": float(s.jepa_loss) if s is not None else None,
                "score01": _finite(s.score01) if s is not None else None,
                "step_surprise": [float(x) for x in s.step_surprise] if s is not None else [],
                "step_z": s.step_z if s is not None else None,
                "first_unlawful_step": s.first_unlawful_step if s is not None else None,
                "composite": _finite(d["composite"]) if d is not None else None,
                "chosen": i == best,
                "vote_share": share.get(i),
                "note": notes.get(i),
            }
        )
    return Ranked(best, order, outs)


def surprising_steps(surprise: list[float], step_z: list[float] | None = None) -> list[int]:
    """The steps to highlight: the top third (at least one), most surprising first.

    Ranked by the position-normalised surprise when the checkpoint has one (raw surprise favours
    some step positions whatever the chain says), else by the raw surprise.
    """
    if step_z is not None and len(step_z) == len(surprise):
        surprise = step_z
    if not surprise:
        return []
    top = max(1, math.ceil(len(surprise) / 3))
    return [int(i) for i in np.argsort(-np.asarray(surprise), kind="stable")[:top]]


def _checked_steps(ms: ModelState, n: int, what: str) -> None:
    if n > ms.max_steps:
        raise ValueError(f"{what} has {n} steps, above the checkpoint's max_steps={ms.max_steps}: give fewer")


def nudge_chain(
    ms: ModelState, decoder: Any, statement: str, params: Any, max_new_tokens: int, temperature: float, seed, domain
):
    """NUDGE: (result, budget, threshold source) with the request's settings, else the checkpoint's fitted
    threshold. decoder: the route's (required for alpha > 0); without one, the partition's when it has one."""
    from rjepa_core.inference.nudge import NudgeConfig, NudgeThreshold, nudge

    student = _require_student(ms)
    if params.threshold is not None:
        threshold, source = NudgeThreshold.constant(params.threshold, "the request"), "the request"
    elif ms.meta.get("nudge"):
        threshold = NudgeThreshold.from_dict(ms.meta["nudge"])
        source = f"the checkpoint: {threshold.quantile:.0%} quantile per position over {threshold.source}"
    else:
        raise ValueError(
            "this checkpoint has no fitted NUDGE threshold (it was trained before NUDGE): pass `nudge.threshold`, "
            "or re-materialize `jepa_checkpoint`"
        )
    budget = params.budget_tokens or 4 * max_new_tokens
    cfg = NudgeConfig(
        m=params.m,
        alpha=params.alpha,
        budget_tokens=budget,
        max_new_tokens=max_new_tokens,
        step_tokens=min(64, max_new_tokens),
        max_steps=ms.max_steps,
        temperature=temperature,
        alt_temperature=params.alt_temperature,
        seed=seed if seed is not None else 0,
        teacher_forced=params.teacher_forced,
    )
    decoder = decoder if decoder is not None else _optional_decoder(ms)
    result = nudge(
        student,
        ms.scorer,
        ask(ms, statement),
        cfg,
        threshold=threshold,
        domain=domain,
        layer_idx=ms.layer_idx,
        pooling=ms.pooling,
        question_pooling=ms.question_pooling,
        decoder=decoder,
    )
    return result, budget, source


def _optional_decoder(ms: ModelState) -> Any:
    """The decoder when there is one (NUDGE then shows the decoded prediction), else None."""
    if ms.decoder is None:
        return None
    try:
        return ms.decoder.get()
    except (RuntimeError, FileNotFoundError):
        return None


def plan_chain(
    ms: ModelState, decoder: Any, statement: str, params: Any, max_new_tokens: int, temperature, seed, domain
):
    from rjepa_core.inference.plan import PlanConfig, plan

    student = _require_student(ms)
    _checked_steps(ms, len(params.steps) + params.k, "the plan (given steps + k)")
    cfg = PlanConfig(
        k=params.k,
        verbalise=params.verbalise,
        continue_generation=params.continue_generation,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed if seed is not None else 0,
    )
    examples = prompt_examples(ms)
    return plan(
        student,
        ms.model,
        decoder,
        ask(ms, statement),
        params.steps,
        cfg,
        domain=domain,
        layer_idx=ms.layer_idx,
        pooling=ms.pooling,
        question_pooling=ms.question_pooling,
        hinted_prompt=lambda hint: student.prompt_for(statement + hint, examples),
    )


def score_written(ms: ModelState, statement: str, text: str, steps: list[str], final_answer: str | None, domain):
    """The chat details of one written chain: its JEPA scores, as a single RERANK candidate."""
    from rjepa_core.inference.rerank import Candidate

    cand = Candidate(text, list(steps)[: ms.max_steps], None, None, final_answer, None)
    return rank(ms, ask(ms, statement), [cand], ms.weights, domain)


def decode_latents(ms: ModelState, decoder: Any, latents: list[list[float]], max_tokens: int | None) -> list[str]:
    Z = np.asarray(latents, dtype=np.float32)
    if Z.shape[1] != decoder.latent_dim:
        raise ValueError(
            f"latents are {Z.shape[1]} wide but the decoder reads {decoder.latent_dim} (llm {ms.llm_tag!r}, "
            f"{ms.pooling} pooling): send the student's pooled step states or /predict_masked's pred_hidden"
        )
    tokenizer = ms.student.tokenizer if ms.student is not None else None
    if tokenizer is None:
        raise RuntimeError(f"decoding needs the student's tokenizer: {ms.student_error or 'no student is loaded'}")
    return decoder.decode(Z, tokenizer, max_tokens=max_tokens)
