"""The image's entrypoint: before a Dagster process that loads `$DAGSTER_HOME/dagster.yaml` starts, check that
every variable the yaml reads (`env: NAME`) is set, and stop with one line naming the missing ones instead of
Dagster's stack of post-processing errors. Any other command runs unchecked.

    python -m rjepa_assets.instance_env dagster-daemon run -w workspace.yaml   # checks, then execs it
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml


def env_refs(node) -> Iterator[str]:
    """Names of the `{env: NAME}` config sources anywhere in a parsed yaml."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            yield node["env"]
        else:
            for value in node.values():
                yield from env_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_refs(value)


def missing_env(instance_yaml: Path, env: Mapping[str, str] = os.environ) -> list[str]:
    names = dict.fromkeys(env_refs(yaml.safe_load(instance_yaml.read_text()) or {}))
    return [name for name in names if not env.get(name)]


def loads_instance(argv: Sequence[str]) -> bool:
    """Processes that build the instance from $DAGSTER_HOME (run and step workers get it serialized instead)."""
    cmd = [Path(argv[0]).name, *argv[1:]]
    return (
        cmd[0] in ("dagster-webserver", "dagster-daemon")
        or cmd[:2] == ["dagster", "dev"]
        or cmd[:3]
        == [
            "dagster",
            "api",
            "grpc",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.exit("usage: python -m rjepa_assets.instance_env COMMAND [ARGS...]")
    path = Path(os.environ.get("DAGSTER_HOME", ".")) / "dagster.yaml"
    if loads_instance(argv) and path.is_file() and (missing := missing_env(path)):
        sys.exit(
            f"{path} reads {', '.join(missing)}, not set in this environment: set them before starting "
            f"{Path(argv[0]).name} (deploy/docker-compose.yaml sets the DAGSTER_PG_* variables; see the README's "
            "'Running on a cluster')"
        )
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
