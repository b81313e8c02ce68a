"""Request and response bodies of the service (plain JSON types only: no torch, no numpy).

    >>> from rjepa_serve.schemas import ScoreRequest
    >>> req = ScoreRequest(latents=[[0.1, 0.2], [0.3, 0.4]], domain="math")
    >>> [len(s.latents) for s in req.all_sequences()]
    [2]
    >>> ScoreRequest(question="What is 2+3?", text="Step 1: 2+3=5\nAnswer: 5").all_texts()[0].question
    'What is 2+3?'

Static limits here are hard ceilings that keep a request's parse bounded; the configurable caps
(ServeSettings.max_*) and the checkpoint's own limits (hidden size, max_steps) are checked by the
routes, which name both numbers in their 422 message.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HARD_MAX_SEQUENCES = 1024
HARD_MAX_STEPS = 1024
HARD_MAX_WIDTH = 16384
HARD_MAX_TEXT = 100_000
HARD_MAX_CANDIDATES = 256
MODES = ("OFF", "RERANK", "NUDGE", "PLAN")
MIN_TEMPERATURE = 0.01

Step = Annotated[list[float], Field(min_length=1, max_length=HARD_MAX_WIDTH)]
Latents = Annotated[list[Step], Field(min_length=1, max_length=HARD_MAX_STEPS)]


def _step_z():
    return Field(
        None,
        description="position-normalised surprise per step (z-score at its position and chain length, fitted on "
        "validation candidates); null when the checkpoint has no normaliser",
    )


def _first_unlawful():
    return Field(
        None,
        description="the first step whose step_z is above the checkpoint's localisation threshold (fitted on the "
        "validation split's wrong chains): the likeliest first mistake; null without step_z",
    )


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_finite(latents: list[list[float]], where: str) -> None:
    """Raise a ValueError naming the first NaN/Inf and the rectangular-shape violations."""
    width = len(latents[0])
    for i, row in enumerate(latents):
        if len(row) != width:
            raise ValueError(
                f"{where}: step {i} has {len(row)} values but step 0 has {width}: latents must be a matrix"
            )
        for j, v in enumerate(row):
            if not math.isfinite(v):
                raise ValueError(f"{where}: value [{i}][{j}] is {v}: latents must be finite numbers (no NaN or Inf)")


QUESTION_DOC = (
    "the student's state at the token before the first step, shape (hidden_size,) (LatentSequence.Q, "
    "Extracted.q); checkpoints with a question token predict every step from it, without it they score "
    "from the steps alone"
)


class SequenceIn(_Body):
    latents: Latents = Field(description="step latents, shape (num_steps, hidden_size)")
    domain: str | None = Field(None, max_length=64, description="math, code, logic, other (unknown = other)")
    question_latent: Step | None = Field(None, description=QUESTION_DOC)

    @model_validator(mode="after")
    def _finite(self) -> SequenceIn:
        check_finite(self.latents, "latents")
        if self.question_latent is not None:
            check_finite([self.question_latent], "question_latent")
        return self


StepText = Annotated[str, Field(max_length=HARD_MAX_TEXT)]
QUESTION_TEXT_DOC = "the problem statement the chain answers (the student is asked it as in training)"
STEPS_DOC = "the chain as its steps' texts, one per step (scored as given)"
CHAIN_TEXT_DOC = (
    "the chain as raw text, cut into steps by the project's segmenter ('Step 1: ...' markers, else lines or "
    "sentences; a final 'Answer: ...' line is not a step)"
)


def _check_text_chain(steps: list[str] | None, text: str | None, where: str) -> None:
    if (steps is None) == (text is None):
        raise ValueError(f"{where}: give the chain either as `steps` (a list of step texts) or as `text`, not both")
    if steps is not None:
        blank = [i for i, t in enumerate(steps) if not t.strip()]
        if blank:
            raise ValueError(f"{where}: steps {blank} are blank: every step needs some text")
    elif not text.strip():
        raise ValueError(f"{where}: `text` is blank: send the chain of thought to score")


class TextChainIn(_Body):
    """A chain as text: the question and its steps (or raw text), scored with latents the served student extracts."""

    question: str = Field(min_length=1, max_length=HARD_MAX_TEXT, description=QUESTION_TEXT_DOC)
    steps: list[StepText] | None = Field(None, min_length=1, max_length=HARD_MAX_STEPS, description=STEPS_DOC)
    text: str | None = Field(None, max_length=HARD_MAX_TEXT, description=CHAIN_TEXT_DOC)
    domain: str | None = Field(None, max_length=64, description="math, code, logic, other (unknown = other)")

    @model_validator(mode="after")
    def _chain(self) -> TextChainIn:
        _check_text_chain(self.steps, self.text, "chain")
        return self


class ScoreRequest(_Body):
    """One chain or a batch, as latents (`latents` / `sequences`) or as text (`question` + `steps`|`text` / `chains`).

    Text is turned into step latents by the served student LLM (the same prompt, layer and pooling as the
    checkpoint's training data); latents are scored as sent.
    """

    latents: Latents | None = Field(None, description="a single chain (num_steps, hidden_size)")
    domain: str | None = Field(None, max_length=64)
    question_latent: Step | None = Field(None, description=QUESTION_DOC)
    sequences: list[SequenceIn] | None = Field(None, min_length=1, max_length=HARD_MAX_SEQUENCES)
    question: str | None = Field(None, min_length=1, max_length=HARD_MAX_TEXT, description=QUESTION_TEXT_DOC)
    steps: list[StepText] | None = Field(None, min_length=1, max_length=HARD_MAX_STEPS, description=STEPS_DOC)
    text: str | None = Field(None, max_length=HARD_MAX_TEXT, description=CHAIN_TEXT_DOC)
    chains: list[TextChainIn] | None = Field(
        None, min_length=1, max_length=HARD_MAX_SEQUENCES, description="a batch of chains as text"
    )

    @model_validator(mode="after")
    def _one_of(self) -> ScoreRequest:
        given = [
            name
            for name, v in (
                ("latents", self.latents),
                ("sequences", self.sequences),
                ("question", self.question),
                ("chains", self.chains),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `latents` (one chain), `sequences` (a batch), `question` with `steps` or "
                f"`text` (one chain as text) or `chains` (a batch as text); got {', '.join(given) or 'none'}"
            )
        if self.question is None and (self.steps is not None or self.text is not None):
            raise ValueError("`steps` and `text` are a chain as text: give the `question` it answers too")
        if self.question is not None:
            _check_text_chain(self.steps, self.text, "chain")
        if self.question_latent is not None and self.latents is None:
            raise ValueError(
                "`question_latent` goes with `latents`; with `sequences`, give each chain's `question_latent` "
                "inside its sequence; with text the served student computes it"
            )
        if self.latents is not None:
            check_finite(self.latents, "latents")
        if self.question_latent is not None:
            check_finite([self.question_latent], "question_latent")
        return self

    @property
    def is_text(self) -> bool:
        return self.question is not None or self.chains is not None

    def all_sequences(self) -> list[SequenceIn]:
        if self.sequences is not None:
            return self.sequences
        return [
            SequenceIn.model_construct(latents=self.latents, domain=self.domain, question_latent=self.question_latent)
        ]

    def all_texts(self) -> list[TextChainIn]:
        if self.chains is not None:
            return self.chains
        one = TextChainIn.model_construct(question=self.question, steps=self.steps, text=self.text, domain=self.domain)
        return [one]


class ChainScoreOut(BaseModel):
    jepa_loss: float = Field(description="aggregate surprise (lower = more lawful)")
    step_surprise: list[float] = Field(description="one surprise per step")
    step_z: list[float] | None = _step_z()
    score01: float | None = Field(description="calibrated lawfulness in [0, 1]; null when the checkpoint has none")
    most_surprising_step: int = Field(description="argmax of step_z when present, else of step_surprise")
    first_unlawful_step: int | None = _first_unlawful()
    steps: list[str] | None = Field(None, description="text input: the steps scored (after segmentation)")
    most_surprising_text: str | None = Field(None, description="text input: the most surprising step's text")
    final_answer: str | None = Field(None, description="text input: the final answer found in `text`, if any")


class ScoreResponse(BaseModel):
    results: list[ChainScoreOut]
    checkpoint_id: str


class PredictMaskedRequest(_Body):
    latents: Latents
    indices: list[Annotated[int, Field(ge=0, le=HARD_MAX_STEPS)]] = Field(min_length=1, max_length=HARD_MAX_STEPS)
    domain: str | None = Field(None, max_length=64)
    question_latent: Step | None = Field(None, description=QUESTION_DOC)

    @model_validator(mode="after")
    def _finite(self) -> PredictMaskedRequest:
        check_finite(self.latents, "latents")
        if self.question_latent is not None:
            check_finite([self.question_latent], "question_latent")
        return self


class PredictMaskedResponse(BaseModel):
    indices: list[int] = Field(description="predicted step indices, sorted, without duplicates")
    pred_jepa: list[list[float]] = Field(description="predictions in JEPA space, (len(indices), d_model)")
    pred_hidden: list[list[float]] = Field(description="predictions in the student's hidden space, (len, hidden)")
    checkpoint_id: str


class Weights(_Body):
    alpha: float = Field(0.0, ge=-100, le=100, description="weight of z(log-prob per token)")
    beta: float = Field(1.0, ge=-100, le=100, description="weight of z(-JEPA-loss)")
    gamma: float = Field(0.0, ge=-100, le=100, description="weight of z(length)")


class _GenerationParams(_Body):
    temperature: float = Field(0.7, ge=0, le=2, description=f"0 (or below {MIN_TEMPERATURE}) = greedy")

    def sampling_temperature(self) -> float:
        """Tiny temperatures overflow the softmax (inf/NaN probabilities): they mean greedy."""
        return self.temperature if self.temperature >= MIN_TEMPERATURE else 0.0

    max_new_tokens: int | None = Field(None, ge=1, le=4096, description="capped by the service setting")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    domain: str | None = Field(None, max_length=64)


SELECTIONS = (
    "composite",
    "jepa_vote",
    "jepa_filter_majority",
    "jepa_last_filter_majority",
    "jepa_excess_filter_majority",
)
Selection = Literal[
    "composite", "jepa_vote", "jepa_filter_majority", "jepa_last_filter_majority", "jepa_excess_filter_majority"
]
SELECTION_HELP = (
    "composite: the best composite JEPA score; jepa_vote: majority vote weighted by softmax(-JEPA-loss/tau); "
    "jepa_filter_majority: majority vote after the least lawful quarter is dropped; "
    "jepa_last_filter_majority: the same, lawfulness read from each chain's last (answer) step; "
    "jepa_excess_filter_majority: the same, dropping the chains whose steps exceed lawful steps at their "
    "positions the most (sum of step_z above 0; needs a checkpoint with a surprise normaliser)"
)


class RerankRequest(_GenerationParams):
    prompt: str = Field(min_length=1, max_length=HARD_MAX_TEXT, description="the problem statement")
    candidates: list[Annotated[str, Field(max_length=HARD_MAX_TEXT)]] | None = Field(
        None, min_length=1, max_length=HARD_MAX_CANDIDATES, description="candidate chains to rank"
    )
    k: int | None = Field(None, ge=1, le=HARD_MAX_CANDIDATES, description="sample K chains (when no candidates)")
    weights: Weights | None = Field(None, description="composite weights; default: the checkpoint's score config")
    selection: Selection = Field("composite", description=SELECTION_HELP)

    @model_validator(mode="after")
    def _one_of(self) -> RerankRequest:
        if self.candidates is not None and self.k is not None:
            raise ValueError("give either `candidates` (texts to rank) or `k` (chains to sample), not both")
        return self


class CandidateOut(BaseModel):
    index: int
    text: str
    steps: list[str]
    final_answer: str | None
    logprob: float | None
    num_tokens: int | None
    jepa_loss: float | None = Field(description="null when the candidate has no step to score")
    score01: float | None
    step_surprise: list[float]
    step_z: list[float] | None = _step_z()
    first_unlawful_step: int | None = _first_unlawful()
    composite: float | None
    chosen: bool
    vote_share: float | None = Field(None, description="its answer's share of the vote (JEPA vote selections)")
    note: str | None = None


class RerankResponse(BaseModel):
    best_index: int
    best: CandidateOut
    candidates: list[CandidateOut]
    order: list[int]
    weights: dict[str, float]
    selection: str
    checkpoint_id: str


class NudgeParams(_Body):
    """NUDGE: write step by step; a step more surprising than the threshold is regenerated (M lines) and the one
    closest to R-JEPA's prediction of it is kept."""

    threshold: float | None = Field(
        None, ge=-1e6, le=1e6, description="surprise above which a step is regenerated; default: the checkpoint's "
        "per-position threshold fitted on validation (90th percentile of lawful steps)"
    )  # fmt: skip
    m: int = Field(4, ge=1, le=16, description="alternative lines sampled for a surprising step")
    alpha: float = Field(
        0.0, ge=0, le=20, description="logit bias toward the tokens of the decoded predicted step (needs the "
        "latent decoder), scaled by how far the surprise is above the threshold; 0 = off"
    )  # fmt: skip
    teacher_forced: bool = Field(
        False, description="re-extract each chain prefix teacher-forced after every line instead of using the "
        "step latents captured while sampling (the student's `latents_from_sampling`)"
    )  # fmt: skip
    budget_tokens: int | None = Field(
        None, ge=1, le=65536, description="tokens generated in all, alternatives included (default 4 x max_new_tokens)"
    )
    alt_temperature: float = Field(0.8, ge=0, le=2, description="sampling temperature of the alternatives")


class PlanParams(_Body):
    """PLAN: R-JEPA predicts the latents of the next k steps, the latent decoder verbalises them, the student
    goes on."""

    steps: list[Annotated[str, Field(min_length=1, max_length=HARD_MAX_TEXT)]] = Field(
        default_factory=list, max_length=HARD_MAX_STEPS, description="steps already written (may be empty)"
    )
    k: int = Field(3, ge=1, le=16, description="steps to plan")
    verbalise: Literal["decoder", "student"] = Field(
        "decoder", description="decoder: the decoded text is the step; student: the student writes each step "
        "with the decoded plan as a hint in its prompt"
    )  # fmt: skip
    continue_generation: bool = Field(True, description="the student finishes the chain after the plan")


class ChatRequest(_GenerationParams):
    prompt: str = Field(min_length=1, max_length=HARD_MAX_TEXT)
    mode: str = Field(
        "OFF", description="OFF (student alone), RERANK (best of K by JEPA), NUDGE (surprising steps regenerated "
        "toward R-JEPA's prediction), PLAN (R-JEPA proposes the next steps, decoded to text)"
    )  # fmt: skip
    k: int = Field(4, ge=1, le=HARD_MAX_CANDIDATES, description="candidates sampled in RERANK mode")
    selection: Selection = Field("composite", description="RERANK mode: " + SELECTION_HELP)
    nudge: NudgeParams | None = Field(None, description="NUDGE mode settings (defaults when omitted)")
    plan: PlanParams | None = Field(None, description="PLAN mode settings (defaults when omitted)")

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        m = v.strip().upper()
        if m not in MODES:
            raise ValueError(f"unknown mode {v!r}: use one of {', '.join(MODES)}")
        return m

    @model_validator(mode="after")
    def _settings_match_mode(self) -> ChatRequest:
        if self.nudge is not None and self.mode != "NUDGE":
            raise ValueError(f"`nudge` settings go with mode NUDGE, not {self.mode}")
        if self.plan is not None and self.mode != "PLAN":
            raise ValueError(f"`plan` settings go with mode PLAN, not {self.mode}")
        return self


class JepaDetails(BaseModel):
    jepa_loss: float | None
    score01: float | None
    step_surprise: list[float]
    step_z: list[float] | None = _step_z()
    surprising_steps: list[int] = Field(
        description="indices of the most surprising steps (by step_z when present), most surprising first"
    )
    first_unlawful_step: int | None = _first_unlawful()
    candidates: list[CandidateOut] = Field(description="every candidate in RERANK mode (chosen first is flagged)")


class AlternativeOut(BaseModel):
    text: str
    cosine: float | None = Field(description="cosine to R-JEPA's prediction of the step (student hidden space)")
    surprise: float | None
    num_tokens: int


class StepTraceOut(BaseModel):
    index: int = Field(description="step position, 0-based")
    text: str = Field(description="the step kept")
    surprise: float = Field(description="surprise of the step first written (predicted from the steps before it)")
    threshold: float
    nudged: bool = Field(description="the step was replaced by an alternative")
    reason: str
    original: str | None = Field(None, description="the step first written, when it was replaced")
    chosen: int | None = Field(None, description="index in `alternatives` of the kept line (0 = the original)")
    alternatives: list[AlternativeOut] = Field(default_factory=list, description="the original first")
    predicted_text: str | None = Field(None, description="R-JEPA's prediction of the step, decoded")
    alpha_eff: float = 0.0


class NudgeOut(BaseModel):
    trace: list[StepTraceOut]
    nudged_steps: list[int]
    tokens_used: int = Field(description="tokens generated in all, alternatives included")
    chain_tokens: int = Field(description="tokens of the chain kept")
    budget_tokens: int
    threshold_source: str
    latents: str = Field(description="where the step latents came from: captured (while sampling) | teacher_forced")
    latent_fallbacks: int = Field(description="lines whose latent could not be captured (extracted teacher-forced)")


class PlanStepOut(BaseModel):
    index: int = Field(description="step position, 0-based")
    decoded: str = Field(description="the latent decoder's text of R-JEPA's predicted latent")
    text: str = Field(description="the step as it entered the chain")
    cosine: float | None = Field(description="the step's latent in the chain vs the predicted one")


class PlanOut(BaseModel):
    given_steps: list[str]
    plan: list[PlanStepOut]
    verbalise: str
    tokens_used: int
    notes: list[str]


class ChatResponse(BaseModel):
    interaction_id: str
    mode: str
    answer: str = Field(description="the final answer (or the whole text when none was found)")
    text: str
    steps: list[str]
    final_answer: str | None
    jepa: JepaDetails
    llm_tag: str
    checkpoint_id: str
    latency_ms: float
    nudge: NudgeOut | None = Field(None, description="NUDGE mode: every step's decision and its reason")
    plan: PlanOut | None = Field(None, description="PLAN mode: the planned steps with their decoded text")


class DecodeRequest(_Body):
    latents: Latents = Field(description="step latents to verbalise, shape (n, hidden_size): the student's "
                             "pooled step states, or /predict_masked's pred_hidden")  # fmt: skip
    max_tokens: int | None = Field(None, ge=1, le=512, description="cap on tokens per text (default the decoder's)")

    @model_validator(mode="after")
    def _finite(self) -> DecodeRequest:
        check_finite(self.latents, "latents")
        return self


class DecodeResponse(BaseModel):
    texts: list[str] = Field(description="one decoded step text per latent")
    llm_tag: str
    dataset_version: str | None
    checkpoint_id: str
    decoder: dict[str, Any] = Field(description="the decoder's held-out metrics (token accuracy, exact match, ...)")


class FeedbackRequest(_Body):
    interaction_id: str | None = Field(None, max_length=64, description="from /chat; server-side record wins")
    rating: Literal["up", "down"]
    consent: bool = Field(False, description="the text may be kept and used for training")
    user_id: str | None = Field(None, min_length=1, max_length=200, description="hashed before storage")
    comment: str | None = Field(None, max_length=2000)
    prompt: str | None = Field(None, max_length=HARD_MAX_TEXT, description="when interaction_id is unknown")
    answer: str | None = Field(None, max_length=HARD_MAX_TEXT)
    steps: list[Annotated[str, Field(max_length=HARD_MAX_TEXT)]] | None = Field(None, max_length=HARD_MAX_STEPS)
    mode: str | None = Field(None, max_length=16)


class FeedbackResponse(BaseModel):
    recorded: bool
    interaction_id: str
    text_kept: bool
    source: str = Field(description="server: the chat was found by id; client: fields from the request")
    date: str


class DeleteUserResponse(BaseModel):
    removed: int


class HealthResponse(BaseModel):
    status: Literal["ok", "no_checkpoint", "error"]
    checkpoint_id: str | None
    llm_tag: str
    dataset_version: str | None
    hidden_size: int | None
    device: str
    student_loaded: bool
    uptime_s: float
    loaded_at: str | None
    message: str | None = None
    # "own checkpoint <id>", or "adapter <id> → reference checkpoint <id> (<llm>)" for an llm served through
    # the latent adapter of another llm's checkpoint until its own lands (None: nothing served)
    serving: str | None = None
    adapter_id: str | None = None  # the adapter's run id when served through one
    reference_llm: str | None = None  # the llm whose checkpoint is served through the adapter


class ReloadResponse(BaseModel):
    changed: bool
    checkpoint_id: str | None
    message: str


class ErrorResponse(BaseModel):
    detail: Any
