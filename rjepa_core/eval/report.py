"""Writing an evaluation report (SPEC F15): report.json, eval_<version>.json, report.md and PNG figures, all atomic.

    >>> paths = write_report(report, "reports/smollm2-135m/v1")
    >>> sorted(paths)
    ['accuracy', 'jepa_loss', 'json', 'markdown', 'summary', 'training']

The Markdown is a short human summary; the JSON holds everything (the CLI and the Dagster asset's
metadata read it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rjepa_core.eval.plots import PNG_FILES, plot_report
from rjepa_core.io import atomic_write_json, atomic_write_text


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci(ci: Any) -> str:
    return f"[{_f(ci[0])}, {_f(ci[1])}]" if ci else "–"


def to_markdown(report: dict[str, Any]) -> str:
    """Human summary: headline numbers, one table per K, localisation, figures."""
    lines = [
        f"# R-JEPA evaluation — {report.get('llm_tag') or '?'} / {report.get('dataset_version') or '?'}",
        "",
        f"{report.get('n_problems')} test problems, {report.get('n_candidates')} candidates "
        f"({_f(report.get('correct_rate'))} correct); greedy source: {report.get('greedy_source')}.",
        "",
        "## Headline",
        "",
        f"- JEPA-loss AUROC (correct vs incorrect, all candidates): **{_f(report.get('auroc_jepa'))}**; "
        f"mean within-problem AUROC: {_f(report.get('auroc_jepa_within_problem'))}",
    ]
    by = report.get("jepa_loss_by_correctness") or {}
    if by:
        lines.append(f"- mean JEPA-loss: correct {_f(by.get('correct'))}, incorrect {_f(by.get('incorrect'))}")
    for key, diff in (report.get("rerank_minus_majority") or {}).items():
        ci = (report.get("rerank_minus_majority_ci95") or {}).get(key)
        vs_greedy = (report.get("rerank_minus_greedy") or {}).get(key)
        lines.append(
            f"- {key}: JEPA rerank − majority vote = **{_f(diff, 3)}** {_ci(ci)}; JEPA rerank − greedy = "
            f"{_f(vs_greedy)}"
        )
    w = report.get("composite_weights")
    if w:
        lines.append(
            f"- composite weights α={w['alpha']}, β={w['beta']}, γ={w['gamma']} "
            f"({report.get('composite_weights_source')})"
        )
    vote = report.get("jepa_vote")
    if vote:
        lines.append(f"- JEPA vote temperature τ_rel={vote['tau_rel']} (τ={_f(vote.get('tau'), 4)}; {vote['source']})")
    for name, per_k in (report.get("paired_vs_majority") or {}).items():
        d = per_k.get(f"k={report.get('k')}")
        if d:
            lines.append(f"- {name} − majority vote (K={report.get('k')}, paired) = {_f(d['diff'])} {_ci(d['ci95'])}")
    for name, why in (report.get("skipped_methods") or {}).items():
        lines.append(f"- skipped {name}: {why}")
    methods = report.get("methods") or {}
    for k in report.get("ks") or [report.get("k")]:
        key = f"k={k}"
        lines += [
            "",
            f"## K = {k} (oracle pass@{k}: {_f((report.get('oracle') or {}).get(key))}, "
            f"{(report.get('n_problems_per_k') or {}).get(key, report.get('n_problems'))} problems)",
            "",
            "| method | accuracy | 95 % CI | AUROC | within-problem AUROC | ms / candidate |",
            "|---|---|---|---|---|---|",
        ]
        for name, per_k in methods.items():
            m = per_k.get(key)
            if m:
                lines.append(
                    f"| {name} | {_f(m.get('accuracy'))} | {_ci(m.get('ci95'))} | {_f(m.get('auroc'))} | "
                    f"{_f(m.get('auroc_within_problem'))} | {_f(m.get('latency_ms_per_candidate'), 3)} |"
                )
    by_source = report.get("by_source") or {}
    if by_source:
        names = list(next(iter(by_source.values()))["accuracy"])
        lines += [
            "",
            f"## By task family (K = {report.get('k')})",
            "",
            "| source | problems | oracle | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names),
        ]
        for src, row in by_source.items():
            accs = " | ".join(_f(row["accuracy"].get(n)) for n in names)
            lines.append(f"| {src} | {row['n_problems']} | {_f(row['oracle_pass_at_k'])} | {accs} |")
    loc = report.get("localisation") or {}
    lines += ["", "## First-error localisation", ""]
    if loc.get("n"):
        lines.append(
            f"Over {loc['n']} incorrect chains with a labelled first wrong step, the most surprising step is that "
            f"step in **{_f(loc.get('hit_rate'))}** {_ci(loc.get('hit_rate_ci95'))} of chains (chance "
            f"{_f(loc.get('chance_rate'))}; within ±1 step: {_f(loc.get('within_one_rate'))})."
        )
    else:
        lines.append("No incorrect chain with a labelled first wrong step (and at least two steps).")
    three = loc.get("three_plus_steps") or {}
    if three.get("n"):
        lines.append(
            f"On the {three['n']} of them with ≥ 3 steps: **{_f(three.get('hit_rate'))}** "
            f"{_ci(three.get('hit_rate_ci95'))} (chance {_f(three.get('chance_rate'))}; within ±1: "
            f"{_f(three.get('within_one_rate'))}, chance {_f(three.get('within_one_chance_rate'))})."
        )
    z = loc.get("position_normalised") or {}
    first = loc.get("first_above") or {}
    rules = (
        (z, f"Position-normalised surprise (z-score per step position and chain length, {z.get('fitted_on')})", ""),
        (
            first,
            f"First step above z = {first.get('threshold')} ({first.get('threshold_source')})",
            "same positions drawn at random {matched}; best fixed position {best}; ",
        ),
    )
    for block, title, baselines in rules:  # each localiser on all labelled chains, then on those with >= 3 steps
        for label, row in (("all", block), ("≥ 3 steps", block.get("three_plus_steps") or {})):
            if row.get("n"):
                extra = baselines.format(
                    matched=_f(row.get("matched_chance_rate")), best=_f(row.get("best_constant_rate"))
                )
                lines.append(
                    f"{title}, {label}: **{_f(row.get('hit_rate'))}** {_ci(row.get('hit_rate_ci95'))} over "
                    f"{row['n']} chains (chance {_f(row.get('chance_rate'))}; {extra}"
                    f"within ±1: {_f(row.get('within_one_rate'))})."
                )
    if report.get("modes"):
        lines += ["", "## Inference modes (OFF, RERANK, NUDGE, PLAN)", "", *modes_markdown(report["modes"])]
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({fname})" for name, fname in PNG_FILES.items()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report.get("notes") or []]
    return "\n".join(lines) + "\n"


def summary(report: dict[str, Any], k: int | None = None) -> dict[str, Any]:
    """The machine-readable result of one version at one K (issue 12's schema; bench/results/eval_<v>.json).

    Localisation is on chains with >= 3 steps (the argmax means little on shorter ones).
    """
    k = int(k if k is not None else report["k"])
    key = f"k={k}"
    methods = {
        name: {"accuracy": per_k[key]["accuracy"], "ci95": per_k[key]["ci95"], "auroc": per_k[key].get("auroc")}
        for name, per_k in (report.get("methods") or {}).items()
        if key in per_k
    }
    paired = {name: per_k[key] for name, per_k in (report.get("paired_vs_majority") or {}).items() if key in per_k}
    whole = report.get("localisation") or {}
    loc = whole.get("three_plus_steps") or {"n": 0}
    loc_z = (whole.get("position_normalised") or {}).get("three_plus_steps") or {"n": 0}
    first = whole.get("first_above") or {}
    loc_keys = ("n", "min_steps", "hit_rate", "chance_rate", "matched_chance_rate", "best_constant_rate")
    loc_keys += ("within_one_rate", "within_one_chance_rate", "hit_rate_ci95")
    # the headline is the service's localiser (first step above the threshold) when the checkpoint has z-scores
    headline = {name: (first.get("three_plus_steps") or {}).get(name) for name in loc_keys}
    headline.update(
        rule="first_above", threshold=first.get("threshold"), threshold_source=first.get("threshold_source")
    )
    argmax = {name: loc.get(name) for name in loc_keys} | {"rule": "argmax"}
    return {
        "version": report.get("dataset_version"),
        "llm": report.get("llm_tag"),
        "k": k,
        "n_problems": (report.get("n_problems_per_k") or {}).get(key, report.get("n_problems")),
        "auroc_jepa": report.get("auroc_jepa"),
        "jepa_vote": report.get("jepa_vote"),
        "methods": methods,
        "paired_vs_majority": paired,
        "localisation": headline if first else argmax,
        "localisation_argmax": argmax,
        "localisation_position_normalised": {name: loc_z.get(name) for name in loc_keys} | {"rule": "argmax of z"},
        **({"modes": {k: v for k, v in report["modes"].items() if k != "nudge"}} if report.get("modes") else {}),
    }


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, eval_<version>.json (`summary`), report.md and the figures into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = plot_report(report, out_dir)
    md = to_markdown(report)
    for name, fname in PNG_FILES.items():  # link only the figures that exist
        if name not in paths:
            md = md.replace(f"![{name}]({fname})\n", "")
    paths["markdown"] = atomic_write_text(out_dir / "report.md", md)
    paths["json"] = atomic_write_json(out_dir / "report.json", report)
    name = f"eval_{report.get('dataset_version') or 'unknown'}.json"
    paths["summary"] = atomic_write_json(out_dir / name, summary(report))
    return paths


def modes_markdown(modes: dict[str, Any]) -> list[str]:
    """The modes table (`eval.modes.evaluate_modes`): accuracy, CI, paired difference vs OFF, tokens, seconds."""
    lines = [
        f"{modes['n_problems']} test problems, RERANK over the first {modes['k']} sampled candidates; NUDGE M="
        f"{modes['nudge']['m']}, threshold = the {modes['nudge']['threshold_quantile']:.0%} quantile per position of "
        f"lawful steps ({modes['nudge']['threshold_source']}); PLAN k={modes['plan']['k']} from "
        f"{modes['plan']['from_steps']} given steps ({modes['plan']['verbalise']}).",
        "",
        "| mode | accuracy | 95 % CI | − OFF (paired) | tokens / problem | s / problem |",
        "|---|---|---|---|---|---|",
    ]
    for m, acc in modes["accuracy"].items():
        d = modes["vs_off"].get(m)
        diff = f"{_f(d['mean'])} {_ci(d['ci95'])}" if d else "—"
        secs = modes.get("seconds_per_problem", {}).get(m)
        lines.append(
            f"| {m} | {_f(acc)} | {_ci(modes['ci95'][m])} | {diff} | {modes['mean_tokens'][m]:.0f} | "
            f"{_f(secs, 1) if secs is not None else '—'} |"
        )
    d = modes.get("nudge_vs_nudge_off")
    if d:
        lines += [
            "",
            f"NUDGE − NUDGE_off (the same step-wise generation, never nudged): {_f(d['mean'])} {_ci(d['ci95'])}; "
            f"{modes['nudge']['problems_nudged']} problems had at least one step nudged.",
        ]
    return lines
