"""The four inference modes side by side on a partition's test problems (SPEC F11, F15).

    >>> report = evaluate_modes(student, ck, decoder, problems, chains, seqs, k=4)   # doctest: +SKIP
    >>> report["accuracy"]["NUDGE"], report["vs_off"]["NUDGE"]["ci95"]              # doctest: +SKIP

OFF and RERANK reuse the chains the pipeline sampled for the test split (the greedy chain, and the
first K sampled candidates with their stored latents), so they are exactly what `eval_report`
measures; NUDGE and PLAN are generated fresh, from the same prompt. Every mode is compared with OFF
on the same problems by a paired bootstrap (accuracy difference and its 95 % interval). Tokens
counts are generated tokens per problem: RERANK pays K chains, NUDGE its alternatives, PLAN its
continuation (plan steps written by the decoder cost the student nothing).

PLAN writes the plan steps as decoded; PLAN:student lets the student write them with the decoded plan
as a hint in its prompt. Both plan after the greedy chain's first `plan_from_steps` steps (default 1;
0 = from the question alone, which needs a question token). On v1 the predictions from the question
alone were nearly the same for every problem, so a plan from m = 0 restated an "average first step".

NUDGE's own control is `NUDGE_off`: the same step-wise generation with an infinite threshold, so
that a difference between NUDGE and OFF cannot come from writing line by line rather than from the
nudges themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rjepa_core.eval.metrics import accuracy, bootstrap_ci, paired_difference
from rjepa_core.schemas import ChainOfThought, Problem


def _label(problem: Problem, steps: list[str], final_answer: str | None) -> bool:
    from rjepa_core.validators.gold import label_chain

    chain = ChainOfThought(
        cot_id="eval-modes",
        problem_id=problem.problem_id,
        steps=steps or ["(empty)"],
        final_answer=final_answer or "",
        is_valid=False,
        origin="eval-modes",
    )
    return bool(label_chain(problem, chain).is_valid)


def _rerank_choice(scorer, cands: list[ChainOfThought], H: dict, Q: dict, domain: str, tau: float) -> dict[str, int]:
    from rjepa_core.inference.vote import filtered_majority, jepa_vote

    scores = scorer.score([H[c.cot_id] for c in cands], [domain] * len(cands), [Q.get(c.cot_id) for c in cands])
    losses = [s.jepa_loss for s in scores]
    answers = [c.final_answer or None for c in cands]
    lp = [c.logprob for c in cands]
    majority = filtered_majority(answers, losses, drop_frac=0.0, logprobs=lp).best_index
    return {
        "jepa_vote": jepa_vote(answers, losses, tau).best_index,
        "jepa_filter_majority": filtered_majority(answers, losses, logprobs=lp).best_index,
        "jepa": int(np.argmin(losses)),
        "majority": majority,
    }


def _agreement(cosines: list[float]) -> dict[str, Any] | None:
    """Cosine of captured with teacher-forced latents of NUDGE's kept steps; None when nothing was captured."""
    if not cosines:
        return None
    c = np.asarray(cosines)
    return {
        "n_steps": len(c),
        "mean": float(c.mean()),
        "min": float(c.min()),
        "share_ge_0.999": float((c >= 0.999).mean()),
    }


def evaluate_modes(
    student: Any,
    ck: Any,
    decoder: Any,
    problems: Sequence[Problem],
    chains: Sequence[ChainOfThought],
    seqs: Sequence[Any],
    *,
    k: int = 4,
    examples: Sequence[Any] = (),
    layer_idx: int | None = None,
    pooling: str | None = None,
    question_pooling: str | None = None,
    nudge_m: int = 4,
    nudge_teacher_forced: bool = False,
    plan_k: int = 2,
    plan_from_steps: int = 1,
    max_new_tokens: int = 160,
    limit: int = 0,
    n_resamples: int = 1000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy of OFF, RERANK (JEPA vote and its siblings at K), NUDGE, NUDGE_off and PLAN on test problems.

    nudge_teacher_forced: NUDGE re-extracts each chain prefix teacher-forced, even where the student captures
    step latents while sampling; the report's `nudge.latents` says which ran, and with captured latents
    `nudge.capture_agreement` their cosine with the teacher-forced ones of the same kept steps.
    """
    from rjepa_core.inference.nudge import NudgeConfig, NudgeThreshold, latent_agreement, nudge
    from rjepa_core.inference.plan import PlanConfig, plan
    from rjepa_core.inference.vote import DEFAULT_TAU_REL, relative_tau
    from rjepa_core.jepa.scoring import JEPAScorer

    scorer = JEPAScorer.from_checkpoint(ck)
    if not ck.meta.get("nudge"):
        raise ValueError("the checkpoint has no fitted NUDGE threshold: re-materialize `jepa_checkpoint`")
    threshold = NudgeThreshold.from_dict(ck.meta["nudge"])
    cal = scorer.calibration
    tau = relative_tau(
        float((ck.meta.get("jepa_vote") or {}).get("tau_rel", DEFAULT_TAU_REL)), cal.std if cal is not None else None
    )
    H = {s.cot_id: np.asarray(s.H, dtype=np.float32) for s in seqs if s.H is not None}
    Q = {s.cot_id: np.asarray(s.Q, dtype=np.float32) for s in seqs if s.Q is not None}
    greedy = {c.problem_id: c for c in chains if c.meta.get("greedy")}
    sampled: dict[str, list[ChainOfThought]] = {}
    for c in sorted(chains, key=lambda c: c.meta.get("sample_index", 0)):
        if not c.meta.get("greedy") and c.cot_id in H:
            sampled.setdefault(c.problem_id, []).append(c)
    test = [
        p for p in problems if p.split == "test" and p.problem_id in greedy and len(sampled.get(p.problem_id, [])) >= k
    ]
    test = test[:limit] if limit else test
    if not test:
        raise ValueError(f"no test problem has a greedy chain and {k} sampled candidates with latents")
    methods = ("OFF", "RERANK:jepa_vote", "RERANK:jepa_filter_majority", "RERANK:jepa", "RERANK:majority",
               "NUDGE", "NUDGE_off", "PLAN", "PLAN:student")  # fmt: skip
    right: dict[str, list[bool]] = {m: [] for m in methods}
    tokens: dict[str, list[int]] = {m: [] for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in ("NUDGE", "NUDGE_off", "PLAN", "PLAN:student")}
    nudged_steps, nudged_problems, examples_out = [], 0, []
    latent_sources, fallbacks, agreement = set(), 0, []
    model = ck.model
    # plan after the greedy chain's first `plan_from_steps` steps (at least one without a question token)
    from_steps = max(plan_from_steps, 0 if model.cfg.question_token else 1)
    for n, p in enumerate(test):
        prompt = student.prompt_for(p.statement, examples)
        g = greedy[p.problem_id]
        right["OFF"].append(bool(g.is_valid))
        tokens["OFF"].append(int(g.meta.get("num_new_tokens", 0)))
        cands = sampled[p.problem_id][:k]
        picks = _rerank_choice(scorer, cands, H, Q, p.domain, tau)
        k_tokens = sum(int(c.meta.get("num_new_tokens", 0)) for c in cands)
        for name, i in picks.items():
            right[f"RERANK:{name}"].append(bool(cands[i].is_valid))
            tokens[f"RERANK:{name}"].append(k_tokens)
        for name, th in (("NUDGE", threshold), ("NUDGE_off", NudgeThreshold.constant(float("inf")))):
            t = time.monotonic()
            cfg = NudgeConfig(m=nudge_m, max_new_tokens=max_new_tokens, budget_tokens=4 * max_new_tokens, seed=n,
                              teacher_forced=nudge_teacher_forced)  # fmt: skip
            r = nudge(student, scorer, prompt, cfg, threshold=th, domain=p.domain, layer_idx=layer_idx,
                      pooling=pooling, question_pooling=question_pooling, decoder=decoder)  # fmt: skip
            seconds[name] += time.monotonic() - t
            right[name].append(_label(p, r.steps, r.final_answer))
            tokens[name].append(r.tokens_used)
            if name == "NUDGE":
                latent_sources.add(r.latents)
                fallbacks += r.latent_fallbacks
                if r.latents == "captured":  # outside the timing: a teacher-forced forward to compare with
                    agreement += latent_agreement(student, prompt, r, layer_idx, pooling, question_pooling)
                nudged_steps.append(len(r.nudged_steps))
                nudged_problems += bool(r.nudged_steps)
                if r.nudged_steps and len(examples_out) < 6:
                    t0 = next(t for t in r.trace if t.nudged)
                    examples_out.append(
                        {"problem": p.statement[:200], "step": t0.index, "original": t0.original, "kept": t0.text,
                         "predicted": t0.predicted_text, "reason": t0.reason, "right": right[name][-1]}
                    )  # fmt: skip
        for name, verbalise in (("PLAN", "decoder"), ("PLAN:student", "student")):
            t = time.monotonic()
            cfg = PlanConfig(k=plan_k, verbalise=verbalise, max_new_tokens=max_new_tokens, seed=n)
            hinted = lambda hint, p=p: student.prompt_for(p.statement + hint, examples)  # noqa: E731
            r = plan(student, model, decoder, prompt, g.steps[:from_steps], cfg, domain=p.domain, layer_idx=layer_idx,
                     pooling=pooling, question_pooling=question_pooling, hinted_prompt=hinted)  # fmt: skip
            seconds[name] += time.monotonic() - t
            right[name].append(_label(p, r.steps, r.final_answer))
            tokens[name].append(r.tokens_used)
        if log and (n + 1) % 5 == 0:
            log(
                f"modes: {n + 1}/{len(test)} problems; " + ", ".join(f"{m} {accuracy(v):.3f}" for m, v in right.items())
            )
    out = {
        "n_problems": len(test),
        "k": k,
        "nudge": {
            "m": nudge_m,
            "threshold_quantile": threshold.quantile,
            "threshold_source": threshold.source,
            "budget_tokens": 4 * max_new_tokens,
            "problems_nudged": nudged_problems,
            "mean_steps_nudged": float(np.mean(nudged_steps)),
            "latents": "/".join(sorted(latent_sources)),  # captured (while sampling) | teacher_forced
            "latent_fallbacks": fallbacks,  # lines whose latent could not be captured (extracted teacher-forced)
            "capture_agreement": _agreement(agreement),
            "examples": examples_out,
        },  # fmt: skip
        "plan": {
            "k": plan_k,
            "verbalise": "PLAN: decoder; PLAN:student: the student, hinted with the decoded plan",
            "from_steps": from_steps,
        },  # fmt: skip
        "accuracy": {m: accuracy(v) for m, v in right.items()},
        "ci95": {m: bootstrap_ci([float(x) for x in v], n_resamples) for m, v in right.items()},
        "vs_off": {
            m: paired_difference([float(x) for x in right[m]], [float(x) for x in right["OFF"]], n_resamples)
            for m in methods
            if m != "OFF"
        },
        "nudge_vs_nudge_off": paired_difference(
            [float(x) for x in right["NUDGE"]], [float(x) for x in right["NUDGE_off"]], n_resamples
        ),
        "mean_tokens": {m: float(np.mean(v)) for m, v in tokens.items()},
        "seconds_per_problem": {m: s / len(test) for m, s in seconds.items()},
    }
    return out
