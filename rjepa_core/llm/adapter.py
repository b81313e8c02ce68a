"""The student LLM (SPEC F3): load from the registry, prompt, sample chains, extract step latents.

    >>> from rjepa_core.llm.adapter import StudentLLM
    >>> llm = StudentLLM.load("smollm2-135m")                  # registry tag, YAML path, folder or hub id
    >>> prompt = llm.prompt_for("Tom has 3 apples and buys 4. How many?")
    >>> chains = llm.generate([prompt], k=4, seed=0)[0]        # 4 GeneratedChain
    >>> latents = llm.extract([(prompt, chains[0].steps)])     # Extracted(H float16 [steps, 576], ...)

Device "auto" picks CUDA, then MPS, then CPU; dtype "auto" is bf16 on CUDA and fp32 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rjepa_core.llm import extraction, generation
from rjepa_core.llm.extraction import ChainInput, Extracted
from rjepa_core.llm.generation import GeneratedChain
from rjepa_core.llm.loading import decoder_layers, load_model
from rjepa_core.llm.prompting import INSTRUCTION, Example, render
from rjepa_core.llm.registry import LLMSpec, resolve_spec

__all__ = ["ChainInput", "Example", "Extracted", "GeneratedChain", "StudentLLM", "INSTRUCTION"]


class StudentLLM:
    """A loaded student: tokenizer + model + the spec it came from."""

    def __init__(self, spec: LLMSpec, tokenizer: Any, model: Any, device: str) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.llm_tag = spec.llm_tag
        self.hidden_size = int(model.config.hidden_size)
        self.layers = decoder_layers(model, spec.kind)
        self.num_layers = len(self.layers)
        extraction.resolve_layer(spec.layer_idx, self.num_layers)  # fail at load, not at first extract
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_token_id = int(pad)

    @classmethod
    def load(cls, spec: LLMSpec | str, device: str = "auto", dtype: str | None = None) -> StudentLLM:
        """From a spec, a registry tag (configs/llms), a YAML path, a local folder, a .gguf file or a hub id."""
        spec = resolve_spec(spec)
        tokenizer, model, device = load_model(spec, device=device, dtype=dtype)
        return cls(spec, tokenizer, model, device)

    def __repr__(self) -> str:
        return (
            f"StudentLLM({self.llm_tag!r}, layers={self.num_layers}, hidden={self.hidden_size}, "
            f"layer_idx={self.spec.layer_idx}, device={self.device!r})"
        )

    def prompt_for(self, statement: str, examples: Sequence[Example] = ()) -> str:
        """Prompt asking for "Step k:" lines and a final "Answer:" line, after any worked examples.

        Without examples (a dataset version with `few_shot: 0`) the registry entry's own are shown, so a
        base model sees the format wherever it is prompted: sampling, extraction, scoring, the service.
        """
        examples = list(examples) or self.spec.examples()
        return render(self.tokenizer, statement, examples, fmt=self.spec.prompt_format)

    def generate(
        self,
        prompts: Sequence[str] | str,
        k: int = 1,
        temperature: float = 0.7,
        max_new_tokens: int = 160,
        top_p: float = 0.95,
        seed: int | None = None,
        batch_size: int | None = None,
        capture=None,
        capture_stats=None,
    ) -> list[list[GeneratedChain]]:
        """k sampled chains per prompt, each with steps, final answer, log-prob and token spans.

        capture: True or a `CaptureSpec` (rjepa_core.llm.capture) also gives each chain its step latents,
        recorded while sampling (`GeneratedChain.latents`); capture_stats: a `CaptureStats` to fill.
        """
        return generation.generate(
            self,
            prompts,
            k=k,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
            capture=capture,
            capture_stats=capture_stats,
        )

    def next_steps(
        self,
        context: str,
        k: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 64,
        seed: int | None = None,
        token_bias: dict[int, float] | None = None,
        capture=None,
        prompt: str | None = None,
        capture_stats=None,
    ) -> list[generation.NextStep]:
        """k samples of the next line after `context` (prompt + chain so far): step-wise generation (NUDGE, PLAN).

        capture: True or a `CaptureSpec` also gives each line the latent of the step it states, recorded while
        sampling (`NextStep.latents`); prompt: the prompt part of `context` (its question latent); capture_stats:
        a `CaptureStats` to fill.
        """
        return generation.next_steps(
            self,
            context,
            k=k,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed,
            token_bias=token_bias,
            capture=capture,
            prompt=prompt,
            capture_stats=capture_stats,
        )

    def extract(
        self,
        items: Sequence[tuple[str, list[str]] | ChainInput],
        layer_idx: int | None = None,
        batch_size: int | None = None,
        share_prefix: bool = True,
        pooling: str | None = None,
        question_pooling: str | None = None,
    ) -> list[Extracted]:
        """Step latents of (prompt, steps) chains, text = prompt + render_chain(steps).

        share_prefix: chains with the same prompt run it once and reuse its cache (same latents, less compute).
        pooling: mean | last | mean_last; default the registry entry's.
        question_pooling: token | span (span needs ChainInput.question); default the registry entry's.
        """
        return extraction.extract(
            self,
            items,
            layer_idx=layer_idx,
            batch_size=batch_size,
            share_prefix=share_prefix,
            pooling=pooling,
            question_pooling=question_pooling,
        )

    def extract_texts(
        self,
        texts: Sequence[str],
        char_spans_per_text: Sequence[Sequence[tuple[int, int]]],
        layer_idx: int | None = None,
        batch_size: int | None = None,
        pooling: str | None = None,
    ) -> list[Extracted]:
        """Pooled latents of given character spans of arbitrary texts."""
        return extraction.extract_texts(
            self, texts, char_spans_per_text, layer_idx=layer_idx, batch_size=batch_size, pooling=pooling
        )

    def logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str], batch_size: int | None = None
    ) -> list[float]:
        """Teacher-forced log-probability of each continuation after its prompt."""
        return generation.logprobs(self, prompts, continuations, batch_size=batch_size)
