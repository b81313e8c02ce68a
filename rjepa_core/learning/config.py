"""Settings of the continuous-learning loop (SPEC F14), from `configs/learning_loop.yaml`.

    >>> cfg = LoopConfig.from_dict({"feedback": {"min_accepted": 5}, "gate": {"min_improvement": 0.02}})
    >>> cfg.feedback.min_accepted, cfg.gate.metric, cfg.warm_start.lr
    (5, 'jepa_selection', 0.0001)

Three sections, one per stage: which feedback becomes training data (`feedback`), how the nightly run
fine-tunes from the deployed checkpoint (`warm_start`), and when a candidate replaces it (`gate`).
A missing file means the defaults; an unknown key or a bad value is an error naming the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rjepa_core.config import read_yaml_mapping

GATE_METRICS = ("jepa_selection", "within_problem_auroc")


@dataclass
class FeedbackPolicy:
    min_score01: float = 0.5  # a thumbs-up counts only if the service's calibrated JEPA score was at least this
    require_check: bool = True  # a positive needs an automatic check that ran and passed (arithmetic / sympy)
    opted_out_workspaces: list[str] = field(default_factory=list)  # never used, whatever the user's consent
    min_accepted: int = 20  # new accepted positives that make the feedback sensor write a dataset version

    def validate(self) -> FeedbackPolicy:
        if not 0.0 <= self.min_score01 <= 1.0:
            raise ValueError(f"feedback.min_score01 must be in [0, 1], got {self.min_score01}")
        if self.min_accepted < 1:
            raise ValueError(f"feedback.min_accepted must be >= 1, got {self.min_accepted}")
        if not isinstance(self.opted_out_workspaces, list):
            raise ValueError("feedback.opted_out_workspaces must be a list of workspace names")
        return self


@dataclass
class WarmStart:
    enabled: bool = True  # nightly runs fine-tune from the deployed checkpoint (False: train from scratch)
    lr: float = 1e-4  # peak learning rate of the fine-tune (the from-scratch default is 3e-4)
    steps: int = 500  # optimizer steps of the fine-tune (from scratch: optim.total_steps, 5000)

    def validate(self) -> WarmStart:
        if self.lr <= 0 or self.steps < 1:
            raise ValueError(f"warm_start needs lr > 0 and steps >= 1, got lr={self.lr}, steps={self.steps}")
        return self


@dataclass
class Gate:
    metric: str = "jepa_selection"  # per-problem metric: jepa_selection (accuracy of the JEPA pick) or
    # within_problem_auroc (AUROC of -JEPA-loss among a problem's candidates)
    min_improvement: float = 0.0  # promote only if mean(candidate - deployed) is above this
    k: int = 8  # candidates per problem (the first k samples, the same for both checkpoints)
    eval_version: str | None = None  # the fixed evaluation partition; None = the candidate's own version
    bootstrap: int = 1000  # paired bootstrap resamples of problems
    seed: int = 0  # bootstrap seed

    def validate(self) -> Gate:
        if self.metric not in GATE_METRICS:
            raise ValueError(f"gate.metric must be one of {GATE_METRICS}, got {self.metric!r}")
        if self.k < 2 or self.bootstrap < 10:
            raise ValueError(f"gate needs k >= 2 and bootstrap >= 10, got k={self.k}, bootstrap={self.bootstrap}")
        return self


@dataclass
class LoopConfig:
    feedback: FeedbackPolicy = field(default_factory=FeedbackPolicy)  # what feedback is accepted
    warm_start: WarmStart = field(default_factory=WarmStart)  # nightly fine-tune settings
    gate: Gate = field(default_factory=Gate)  # A/B promotion rule

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopConfig:
        sections = {"feedback": FeedbackPolicy, "warm_start": WarmStart, "gate": Gate}
        unknown = set(d) - set(sections)
        if unknown:
            raise ValueError(f"unknown learning-loop sections {sorted(unknown)}: use {sorted(sections)}")
        built = {}
        for name, kind in sections.items():
            raw = d.get(name) or {}
            if not isinstance(raw, dict):
                raise ValueError(f"learning-loop section {name!r} must be a mapping")
            bad = set(raw) - {f.name for f in fields(kind)}
            if bad:
                raise ValueError(f"unknown keys {sorted(bad)} in learning-loop section {name!r}")
            built[name] = kind(**raw).validate()
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_loop_config(path: str | Path) -> LoopConfig:
    """The loop settings in `path` (defaults when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return LoopConfig()
    raw = read_yaml_mapping(path, "feedback / warm_start / gate sections")
    try:
        return LoopConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
