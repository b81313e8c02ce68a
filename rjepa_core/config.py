"""Typed configuration of the R-JEPA world model (SPEC F6-F10), built from YAML sections.

    >>> from rjepa_core.config import RJEPAConfig, rjepa_tiny
    >>> cfg = RJEPAConfig(model=rjepa_tiny(hidden_size=576))
    >>> cfg.model.d_model, cfg.mask.kind, cfg.loss.kind
    (64, 'contiguous', 'l1')
    >>> cfg2 = cfg.replace(train={"batch_size": 8}, optim={"lr": 1e-3})
    >>> RJEPAConfig.from_dict(cfg2.to_dict()) == cfg2
    True

A YAML file has the sections `model:`, `mask:`, `loss:`, `optim:`, `train:`, `score:`; `model:` may name a
`preset:` (tiny | small | base | large) whose values the other keys override. Every section is validated on
load and a bad value raises a ValueError naming the field (`model.num_heads: ...`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | Path, expected: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (empty file: {}); errors name the file and say what it should hold."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with {expected}")
    return raw


DEFAULT_DOMAINS = ["math", "code", "logic", "other"]
MASK_KINDS = ("random", "contiguous", "hierarchical", "conclusion")
LOSS_KINDS = ("l1", "l2", "cosine")
SCORE_MODES = ("leave_one_out", "window", "prefix", "question")
AGGREGATES = ("mean", "max", "top2")


def _bad(section: str, name: str, msg: str) -> ValueError:
    return ValueError(f"{section}.{name}: {msg}")


def _positive_int(section: str, obj: Any, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
            raise _bad(section, name, f"must be an integer {'>= 0' if allow_zero else '>= 1'}, got {v!r}")


def _non_negative(section: str, obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise _bad(section, name, f"must be a number >= 0, got {v!r}")


@dataclass
class ModelConfig:
    hidden_size: int  # width of the student's step latents (576 for SmolLM2-135M); required
    d_model: int = 256  # width of the context / target encoders
    depth: int = 4  # transformer blocks in the context (and target) encoder
    num_heads: int = 4  # attention heads of the encoders; must divide d_model
    pred_depth: int = 2  # transformer blocks in the predictor
    pred_d_model: int = 128  # predictor width: narrower than d_model so it cannot just copy the context
    pred_num_heads: int = 4  # attention heads of the predictor; must divide pred_d_model
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * block width
    dropout: float = 0.0  # dropout in attention output and MLP (0 keeps training bitwise reproducible)
    max_steps: int = 64  # longest chain (in steps) the position embeddings cover
    domains: list[str] = field(default_factory=lambda: list(DEFAULT_DOMAINS))  # unknown names map to "other"
    use_step_type: bool = False  # add a step-type embedding (needs step_types ids at call time)
    num_step_types: int = 8  # vocabulary of step types when use_step_type is on
    # Condition on the question: the student's state at the token just before a chain's first step (it has
    # read the whole prompt) enters both encoders as an always-visible token, so even a one-step chain has a
    # context and every step is predicted given the problem. Chains without a question latent still work
    # (the token is then masked out).
    question_token: bool = False

    def validate(self) -> ModelConfig:
        s = "model"
        _positive_int(s, self, "hidden_size", "d_model", "depth", "num_heads", "pred_depth", "pred_d_model")
        _positive_int(s, self, "pred_num_heads", "max_steps", "num_step_types")
        if self.d_model % self.num_heads:
            raise _bad(s, "num_heads", f"{self.num_heads} does not divide d_model={self.d_model}")
        if self.pred_d_model % self.pred_num_heads:
            raise _bad(s, "pred_num_heads", f"{self.pred_num_heads} does not divide pred_d_model={self.pred_d_model}")
        if not isinstance(self.mlp_ratio, int | float) or self.mlp_ratio <= 0:
            raise _bad(s, "mlp_ratio", f"must be > 0, got {self.mlp_ratio!r}")
        if not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise _bad(s, "dropout", f"must be in [0, 1), got {self.dropout!r}")
        if not self.domains or not all(isinstance(d, str) and d for d in self.domains):
            raise _bad(s, "domains", f"must be a non-empty list of names, got {self.domains!r}")
        if "other" not in self.domains:
            raise _bad(s, "domains", f"must contain 'other' (unknown domains map to it), got {self.domains!r}")
        if len(set(self.domains)) != len(self.domains):
            raise _bad(s, "domains", f"has duplicates: {self.domains!r}")
        for flag in ("use_step_type", "question_token"):
            if not isinstance(getattr(self, flag), bool):
                raise _bad(s, flag, f"must be true or false, got {getattr(self, flag)!r}")
        return self

    def domain_id(self, name: str | None) -> int:
        """Index of a domain name; unknown or missing names map to "other"."""
        return self.domains.index(name) if name in self.domains else self.domains.index("other")


@dataclass
class MaskConfig:
    kind: str = "contiguous"  # random | contiguous | hierarchical | conclusion
    ratio_min: float = 0.3  # smallest fraction of a chain's steps masked (random / contiguous)
    ratio_max: float = 0.7  # largest fraction masked (random / contiguous)
    min_context: int = 1  # steps always left visible; chains need min_context + 1 steps to be trained on
    conclusion_steps: int = 1  # how many final steps the conclusion masker hides
    seed: int = 0  # base seed of the collator's mask generator (masks depend on seed + step only)

    def validate(self) -> MaskConfig:
        s = "mask"
        if self.kind not in MASK_KINDS:
            raise _bad(s, "kind", f"is {self.kind!r}; use one of {MASK_KINDS}")
        for name in ("ratio_min", "ratio_max"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0 < v < 1:
                raise _bad(s, name, f"must be in (0, 1), got {v!r}")
        if self.ratio_min > self.ratio_max:
            raise _bad(s, "ratio_min", f"{self.ratio_min} is above ratio_max={self.ratio_max}")
        _positive_int(s, self, "min_context", "conclusion_steps")
        _positive_int(s, self, "seed", allow_zero=True)
        return self


@dataclass
class LossConfig:
    kind: str = "l1"  # regression loss between predictions and layer-normed targets: l1 | l2 | cosine
    # Weight of the variance hinge on predictions (anti-collapse). Layer-normed targets have a per-dimension
    # std of ~0.8-0.9, so a strong hinge at gamma=1 fights the regression; 0.1 still makes a collapsed
    # prediction cost ~0.1 while letting the loss fall (measured on synthetic chains: val 0.54 vs 0.95 at 1.0).
    var_weight: float = 0.1
    var_gamma: float = 1.0  # target std per dimension for the hinge (layer-normed targets have std ~1)
    vicreg_cov_weight: float = 0.0  # weight of the VICReg covariance (decorrelation) term on predictions
    infonce_weight: float = 0.0  # weight of the chain-level InfoNCE term (0 = off)
    tau: float = 0.07  # InfoNCE temperature
    hard_negatives: bool = False  # add invalid chains of the batch as extra InfoNCE negatives
    num_hard_negatives: int = 4  # invalid chains appended to each training batch when hard_negatives is on
    # Energy margin: each invalid chain of the batch must have a chain JEPA-loss (mean over its masked steps) at
    # least `energy_margin` above each validated chain's, hinge averaged over the pairs (0 = off; needs
    # hard_negatives, which brings the invalid chains into the batch).
    energy_weight: float = 0.0
    energy_margin: float = 0.05
    # Which pairs pay it: "batch" (every validated x invalid chain of the batch) or "problem" (only chains of the
    # same problem, and the batch's invalid chains are drawn from the problems of its validated ones) — the
    # comparison a reranker makes.
    energy_pairs: str = "batch"
    hidden_weight: float = 0.1  # weight of the to_hidden head loss against the raw student latents
    hidden_kind: str = "l1"  # loss of the to_hidden head: l1 | l2

    def validate(self) -> LossConfig:
        s = "loss"
        if self.kind not in LOSS_KINDS:
            raise _bad(s, "kind", f"is {self.kind!r}; use one of {LOSS_KINDS}")
        if self.hidden_kind not in ("l1", "l2"):
            raise _bad(s, "hidden_kind", f"is {self.hidden_kind!r}; use l1 or l2")
        _non_negative(s, self, "var_weight", "var_gamma", "vicreg_cov_weight", "infonce_weight", "hidden_weight")
        _non_negative(s, self, "energy_weight", "energy_margin")
        if self.energy_pairs not in ("batch", "problem"):
            raise _bad(s, "energy_pairs", f"is {self.energy_pairs!r}; use batch or problem")
        if self.energy_weight > 0 and not self.hard_negatives:
            raise _bad(s, "energy_weight", "needs invalid chains in the batch: set loss.hard_negatives: true")
        if not isinstance(self.tau, int | float) or self.tau <= 0:
            raise _bad(s, "tau", f"must be > 0, got {self.tau!r}")
        _positive_int(s, self, "num_hard_negatives")
        return self


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak learning rate after warmup
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    weight_decay: float = 0.05  # AdamW decay on weight matrices (never on norms, biases, embeddings)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    warmup_steps: int = 100  # linear warmup from 0 to lr
    total_steps: int = 5000  # length of the schedule; training stops here (or earlier by early stopping)
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    ema_start: float = 0.996  # EMA momentum of the target encoder at step 0
    ema_end: float = 1.0  # EMA momentum at the last step (target frozen at the end)

    def validate(self) -> OptimConfig:
        s = "optim"
        _non_negative(s, self, "lr", "min_lr", "weight_decay", "grad_clip")
        if self.min_lr > self.lr:
            raise _bad(s, "min_lr", f"{self.min_lr} is above lr={self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise _bad(s, "betas", f"must be two numbers in [0, 1), got {self.betas!r}")
        _positive_int(s, self, "warmup_steps", allow_zero=True)
        _positive_int(s, self, "total_steps")
        for name in ("ema_start", "ema_end"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0 <= v <= 1:
                raise _bad(s, name, f"must be in [0, 1], got {v!r}")
        return self


@dataclass
class TrainConfig:
    batch_size: int = 64  # chains per training step
    val_every: int = 200  # steps between validation passes (and early-stopping checks)
    patience: int = 5  # validation passes without improvement before stopping (0 = never stop early)
    min_delta: float = 0.0  # improvement of val loss below this counts as no improvement
    seed: int = 0  # seed of model init, data order and dropout
    bf16: bool = True  # bf16 autocast; only ever applied on CUDA
    num_workers: int = 0  # kept for loader parity; batches are built in-process (they are tiny)
    checkpoint_every: int = 500  # steps between full checkpoints written to last/ (0 = only at the end)
    # repeats of one chain of a problem (same tokens) count once as targets and as negatives
    distinct_chains: bool = False
    # which student chains are targets / negatives: "validator" (its verdict against the gold answer) or
    # "majority" (agreement with the problem's top sampled answer: no student label read; rjepa_core.jepa.labels)
    labels: str = "validator"

    def validate(self) -> TrainConfig:
        s = "train"
        if self.labels not in ("validator", "majority"):
            raise _bad(s, "labels", f"is {self.labels!r}; use validator or majority")
        if not isinstance(self.distinct_chains, bool):
            raise ValueError(f"train.distinct_chains must be true or false, got {self.distinct_chains!r}")
        _positive_int(s, self, "batch_size", "val_every")
        _positive_int(s, self, "patience", "seed", "num_workers", "checkpoint_every", allow_zero=True)
        _non_negative(s, self, "min_delta")
        return self


@dataclass
class ScoreConfig:
    # leave_one_out: mask each step in turn | window: mask contiguous windows | prefix: mask every suffix (a step
    # is predicted from the steps before it only, never from the ones after) | question: mask all steps at once
    # (every step predicted from the question latent alone)
    mode: str = "leave_one_out"
    window: int = 2  # window length in steps for mode=window
    aggregate: str = "mean"  # chain JEPA-loss from per-step surprises: mean | max | top2 (mean of the 2 largest)
    chunk_size: int = 256  # (chain, masked step) variants per forward pass
    # RERANK composite = alpha*logprob + beta*(-JEPA) + gamma*length, each term z-scored over the K
    # candidates; the default is pure JEPA reranking (the F15 "JEPA rerank" method).
    alpha: float = 0.0  # weight of the per-token log-probability
    beta: float = 1.0  # weight of the negated JEPA-loss
    gamma: float = 0.0  # weight of the length term (positive favours longer chains)

    def validate(self) -> ScoreConfig:
        s = "score"
        if self.mode not in SCORE_MODES:
            raise _bad(s, "mode", f"is {self.mode!r}; use one of {SCORE_MODES}")
        if self.aggregate not in AGGREGATES:
            raise _bad(s, "aggregate", f"is {self.aggregate!r}; use one of {AGGREGATES}")
        _positive_int(s, self, "window", "chunk_size")
        for name in ("alpha", "beta", "gamma"):
            if not isinstance(getattr(self, name), int | float):
                raise _bad(s, name, f"must be a number, got {getattr(self, name)!r}")
        return self


def _preset(hidden_size: int, base: dict[str, Any], kw: dict[str, Any]) -> ModelConfig:
    return ModelConfig(hidden_size=hidden_size, **{**base, **kw}).validate()


def rjepa_tiny(hidden_size: int, **kw: Any) -> ModelConfig:
    """Tests and CPU demos: ~0.1 M parameters plus the input projection."""
    base = dict(d_model=64, depth=2, num_heads=4, pred_depth=2, pred_d_model=32, pred_num_heads=4, mlp_ratio=2.0)
    return _preset(hidden_size, base, kw)


def rjepa_small(hidden_size: int, **kw: Any) -> ModelConfig:
    base = dict(d_model=256, depth=4, num_heads=4, pred_depth=2, pred_d_model=128, pred_num_heads=4)
    return _preset(hidden_size, base, kw)


def rjepa_base(hidden_size: int, **kw: Any) -> ModelConfig:
    base = dict(d_model=512, depth=8, num_heads=8, pred_depth=4, pred_d_model=256, pred_num_heads=8)
    return _preset(hidden_size, base, kw)


def rjepa_large(hidden_size: int, **kw: Any) -> ModelConfig:
    base = dict(d_model=1024, depth=12, num_heads=16, pred_depth=6, pred_d_model=384, pred_num_heads=8)
    return _preset(hidden_size, base, kw)


PRESETS = {"tiny": rjepa_tiny, "small": rjepa_small, "base": rjepa_base, "large": rjepa_large}
SECTIONS = {
    "mask": MaskConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "score": ScoreConfig,
}


def _build(cls: type, section: str, d: dict[str, Any]) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{section}: must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{section}: unknown field(s) {unknown}; known fields are {sorted(names)}")
    return cls(**d).validate()


def build_model_config(d: dict[str, Any]) -> ModelConfig:
    """ModelConfig from a `model:` section, expanding an optional `preset:` key."""
    if not isinstance(d, dict):
        raise ValueError(f"model: must be a mapping, got {type(d).__name__}")
    d = dict(d)
    if "hidden_size" not in d:
        raise ValueError("model.hidden_size: required (the student's latent width, e.g. 576 for SmolLM2-135M)")
    preset = d.pop("preset", None)
    if preset is None:
        return _build(ModelConfig, "model", d)
    if preset not in PRESETS:
        raise ValueError(f"model.preset: is {preset!r}; use one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"model: unknown field(s) {unknown}; known fields are {sorted(names)}")
    hidden = d.pop("hidden_size")
    return PRESETS[preset](hidden, **d)


@dataclass
class RJEPAConfig:
    model: ModelConfig  # architecture (stored in every checkpoint so it rebuilds its own model)
    mask: MaskConfig = field(default_factory=MaskConfig)  # masking strategy for training
    loss: LossConfig = field(default_factory=LossConfig)  # loss terms and weights
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimiser and schedules
    train: TrainConfig = field(default_factory=TrainConfig)  # loop, validation, checkpoints
    score: ScoreConfig = field(default_factory=ScoreConfig)  # inference scoring and rerank weights

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> RJEPAConfig:
        for name in ("model", *SECTIONS):
            getattr(self, name).validate()
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RJEPAConfig:
        if not isinstance(d, dict):
            raise ValueError(f"R-JEPA config must be a mapping of sections, got {type(d).__name__}")
        unknown = sorted(set(d) - {"model", *SECTIONS})
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; use model, {', '.join(SECTIONS)}")
        if "model" not in d:
            raise ValueError("config needs a `model:` section with at least hidden_size")
        parts = {name: _build(c, name, d.get(name) or {}) for name, c in SECTIONS.items()}
        return cls(model=build_model_config(d["model"]), **parts)

    @classmethod
    def from_yaml(cls, path: str | Path, **section_overrides: dict[str, Any]) -> RJEPAConfig:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"R-JEPA config {path} does not exist (see configs/rjepa/*.yaml)")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML: {e}") from e
        try:
            cfg = cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        return cfg.replace(**section_overrides) if section_overrides else cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **section_overrides: dict[str, Any]) -> RJEPAConfig:
        """New config with some fields of some sections changed: `cfg.replace(train={"batch_size": 8})`."""
        d = self.to_dict()
        for section, values in section_overrides.items():
            if section not in d:
                raise ValueError(f"unknown config section {section!r}; use model, {', '.join(SECTIONS)}")
            if not isinstance(values, dict):
                raise ValueError(f"{section}: overrides must be a mapping of field -> value")
            d[section] = {**d[section], **values}
        return RJEPAConfig.from_dict(d)
