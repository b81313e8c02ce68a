"""Prompt templates in YAML (`configs/teachers/prompts/*.yaml`): a system and a user message.

    >>> t = load_prompt("multi_cot")
    >>> msgs = t.render(statement="What is 2+3?", domain="math", style="")
    >>> [m["role"] for m in msgs]
    ['system', 'user']

Placeholders are `{name}`; a missing one raises with the list of the template's placeholders.
Literal braces in a template are written `{{` and `}}`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import yaml

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "configs" / "teachers" / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # file stem, recorded in Problem.meta["template_id"]
    version: int  # bump when the wording changes, so datasets record which prompt made them
    system: str  # system message template
    user: str  # user message template

    @property
    def template_id(self) -> str:
        return f"{self.name}@v{self.version}"

    def placeholders(self) -> set[str]:
        return {f for text in (self.system, self.user) for _, f, _, _ in string.Formatter().parse(text) if f}

    def render(self, **values: object) -> list[dict[str, str]]:
        missing = self.placeholders() - values.keys()
        if missing:
            raise ValueError(f"prompt {self.name} needs {sorted(missing)} (it uses {sorted(self.placeholders())})")
        return [
            {"role": "system", "content": self.system.format(**values).strip()},
            {"role": "user", "content": self.user.format(**values).strip()},
        ]


def load_prompt(name: str, directory: str | Path = PROMPTS_DIR) -> PromptTemplate:
    path = Path(directory) / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in Path(directory).glob("*.yaml"))
        raise FileNotFoundError(f"no prompt template {name!r} in {directory} (known: {known})")
    data = yaml.safe_load(path.read_text())
    return PromptTemplate(
        name=data.get("name", name), version=int(data.get("version", 1)), system=data["system"], user=data["user"]
    )
