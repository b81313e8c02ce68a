"""Evaluation (SPEC F15): selection methods on the same candidates, metrics, report, ablations.

    >>> from rjepa_core.eval import evaluate, write_report
    >>> report = evaluate(problems, test_chains, latents, scorer, train_chains=train, train_latents=train_H)
    >>> write_report(report, "reports/smollm2-135m/v1")

See `evaluation` for the report's fields and `ablation` for config sweeps.
"""

from rjepa_core.eval.evaluation import evaluate
from rjepa_core.eval.report import write_report

__all__ = ["evaluate", "write_report"]
