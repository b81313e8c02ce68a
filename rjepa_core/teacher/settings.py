"""Teacher endpoints configured from the environment (pydantic-settings); keys never leave it.

    >>> env = {"TEACHER_LOCAL_BASE_URL": "http://127.0.0.1:8000/v1", "TEACHER_LOCAL_MODEL": "qwen3-8b",
    ...        "TEACHER_LOCAL_API_KEY": "sk-...", "TEACHER_LOCAL_RPM": "60"}
    >>> t = load_teachers(env)["local"]
    >>> t.model, t.rpm, str(t.api_key)
    ('qwen3-8b', 60, '**********')

One teacher per `<NAME>` in `TEACHER_<NAME>_BASE_URL` / `_MODEL` (both required) and optional
`_API_KEY`, `_RPM`, `_TPM`, `_TIMEOUT_S`, `_MAX_RETRIES`, `_TEMPERATURE`, `_MAX_TOKENS`. The key
is a `SecretStr`: its repr, str and JSON dump show `**********`; only the HTTP client reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic import SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

_NAME = re.compile(r"^TEACHER_([A-Z0-9]+(?:_[A-Z0-9]+)*?)_(BASE_URL|MODEL)$", re.I)


class TeacherSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    name: str  # short teacher name (lower case), used in logs and in origin "teacher:<model>"
    base_url: str  # OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1
    model: str  # model id sent to the endpoint; also the price-table key
    api_key: SecretStr = SecretStr("not-needed")  # local servers (vLLM, Ollama) accept any key
    rpm: int | None = None  # requests per minute allowed (None: unlimited)
    tpm: int | None = None  # tokens per minute allowed (prompt + completion; None: unlimited)
    timeout_s: float = 60.0  # per-request timeout in seconds
    max_retries: int = 5  # retries on 429/5xx/timeouts/connection errors before giving up
    temperature: float = 0.8  # sampling temperature (diversity across chains)
    max_tokens: int = 2048  # completion cap per request (also bounds the budget estimate)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):
        return (init_settings,)  # values come from load_teachers' mapping, never from stray variables


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env parsing applied to a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str], prefix: str):
        self._mapping = env
        super().__init__(settings_cls, env_prefix=prefix, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._mapping.items()}


def load_teachers(env: Mapping[str, str] = os.environ) -> dict[str, TeacherSettings]:
    """Every teacher configured in `env`, by lower-case name."""
    names = sorted({m.group(1).upper() for k in env if (m := _NAME.match(k))})
    teachers = {}
    for name in names:
        values = _MappingEnvSource(TeacherSettings, env, f"TEACHER_{name}_")()
        missing = [f for f in ("base_url", "model") if f not in values]
        if missing:
            need = " and ".join(f"TEACHER_{name}_{f.upper()}" for f in missing)
            raise ValueError(f"teacher {name.lower()} is half configured: set {need}")
        values.pop("name", None)
        teachers[name.lower()] = TeacherSettings(name=name.lower(), **values)
    return teachers
