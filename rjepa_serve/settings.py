"""Service settings (pydantic-settings, environment prefix `RJEPA_`).

    >>> from rjepa_serve.settings import ServeSettings
    >>> s = ServeSettings(storage="/tmp/rjepa-store", llm_tag="smollm2-135m", reload_interval_s=0)
    >>> s.max_candidates, s.resolved_device()
    (8, 'cpu')

Every field can come from the environment: `RJEPA_STORAGE=/data/rjepa RJEPA_LLM_TAG=qwen3-8b rjepa serve`.
`RJEPA_STORAGE` is the same variable the Dagster storage resource reads, so the service follows the
LATEST pointer that the `jepa_checkpoint` asset publishes under that root.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RJEPA_", extra="ignore")

    storage: str | Path = ".rjepa/store"  # storage root: a folder or s3://bucket/prefix (checkpoints/, LATEST, ...)
    llm_tag: str = "smollm2-135m"  # student whose LATEST checkpoint is served (configs/llms/<tag>.yaml)
    llm_source: str | None = None  # override the student's source (folder, .gguf, hub id); None = registry
    load_student: bool = True  # False serves /score and /predict_masked only (no generation)
    device: str = "auto"  # auto = CUDA when present, else CPU
    torch_threads: int = Field(1, ge=1)  # intra-op threads per model call (two model threads may run at once)
    reload_interval_s: float = Field(30.0, ge=0)  # poll the LATEST pointer this often (0 = never)
    admin_token: SecretStr | None = None  # when set, POST /admin/reload needs header X-Admin-Token

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)  # request bodies above this get 413
    max_sequences: int = Field(64, ge=1)  # chains per /score request
    max_steps: int = Field(64, ge=1)  # steps per chain (also bounded by the checkpoint's max_steps)
    max_candidates: int = Field(8, ge=1)  # candidate texts or K per /rerank and /chat
    max_prompt_chars: int = Field(4000, ge=1)  # characters of a prompt
    max_candidate_chars: int = Field(8000, ge=1)  # characters of one candidate text
    max_new_tokens: int = Field(256, ge=1)  # generation cap per chain
    default_new_tokens: int = Field(160, ge=1)  # generation length when the request does not say
    generation_timeout_s: float = Field(120.0, gt=0)  # model call wall time (queue included) before 503/504
    # Bounded admission: model calls queued or running per model thread; one more gets 429 + Retry-After at once.
    max_queue_generation: int = Field(16, ge=1)  # student thread: /chat, /rerank, /decode, text /score, /feedback
    max_queue_scoring: int = Field(64, ge=1)  # R-JEPA thread: /score on latents, /predict_masked
    max_retry_after_s: int = Field(60, ge=1)  # cap of the Retry-After a 429 suggests (queue drain estimate)

    interactions_salt: SecretStr | None = None  # salt of user-id hashes; None = a random one kept in storage
    collect_text: bool = True  # workspace-level opt-out: False never keeps interaction text
    workspace: str = "default"  # workspace name written with each interaction
    recent_chats: int = Field(1000, ge=1)  # chats remembered for /feedback by interaction_id

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
