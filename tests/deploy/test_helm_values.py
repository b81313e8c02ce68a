"""deploy/helm/values.yaml against Dagster's Helm chart, and the run queue / pools of every instance config.

The chart validates values with a JSON schema generated from pydantic models (helm/dagster/schema in
dagster-io/dagster, Apache-2.0). Neither helm nor that generated schema is available offline here, so the
field names of the models for the sections we set are listed below, as of the 1.13 chart. The sections
whose models forbid extra fields must use only those names; a misspelt key fails here, as `helm install`
would reject it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.test_k8s import snake

ROOT = Path(__file__).resolve().parents[2]

# DagsterHelmValues (schema/charts/dagster/values.py)
TOP_LEVEL = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
    "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
    "telemetry", "serviceAccount", "global", "retention", "concurrency", "additionalInstanceConfig",
}  # fmt: skip
# UserDeployments / UserDeployment (schema/charts/dagster_user_deployments/subschema/user_deployments.py)
USER_DEPLOYMENTS = {"enabled", "enableSubchart", "imagePullSecrets", "deployments"}
USER_DEPLOYMENT = {
    "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "env",
    "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "labels", "volumeMounts", "volumes", "schedulerName",
}  # fmt: skip
IMAGE = {"repository", "tag", "pullPolicy"}
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}
# RunLauncher, K8sRunLauncherConfig, RunK8sConfig (schema/charts/dagster/subschema/run_launcher.py; extra=forbid)
RUN_LAUNCHER = {"type", "config"}
RUN_LAUNCHER_TYPES = {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"}
K8S_RUN_LAUNCHER = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
RUN_K8S_CONFIG = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
# PostgreSQL (subschema/postgresql.py)
POSTGRESQL = {
    "postgresqlScheme", "image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
    "postgresqlDatabase", "postgresqlParams", "service",
}  # fmt: skip
# Concurrency (subschema/concurrency.py; extra=forbid)
CONCURRENCY = {"enabled", "pools", "runs"}
POOLS = {"defaultLimit", "granularity", "opGranularityRunBuffer"}
RUNS = {"maxConcurrentRuns", "tagConcurrencyLimits"}
TAG_LIMIT = {"key", "value", "limit"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def unknown(section: dict, allowed: set[str]) -> set[str]:
    return set(section) - allowed


def test_values_use_only_the_charts_field_names():
    v = load(ROOT / "deploy" / "helm" / "values.yaml")
    assert not unknown(v, TOP_LEVEL)

    ud = v["dagster-user-deployments"]
    assert not unknown(ud, USER_DEPLOYMENTS) and ud["enabled"] and ud["enableSubchart"]
    for dep in ud["deployments"]:
        assert not unknown(dep, USER_DEPLOYMENT), dep["name"]
        assert not unknown(dep["image"], IMAGE) and dep["image"]["pullPolicy"] in PULL_POLICIES
        assert isinstance(dep["port"], int) and all(isinstance(a, str) for a in dep["dagsterApiGrpcArgs"])

    rl = v["runLauncher"]
    assert not unknown(rl, RUN_LAUNCHER) and rl["type"] in RUN_LAUNCHER_TYPES
    assert rl["type"] == "K8sRunLauncher" and set(rl["config"]) == {"k8sRunLauncher"}
    k8s = rl["config"]["k8sRunLauncher"]
    assert not unknown(k8s, K8S_RUN_LAUNCHER) and not unknown(k8s.get("runK8sConfig", {}), RUN_K8S_CONFIG)

    pg = v["postgresql"]
    assert not unknown(pg, POSTGRESQL) and isinstance(pg["service"]["port"], int)

    c = v["concurrency"]
    assert not unknown(c, CONCURRENCY) and c["enabled"] is True
    assert not unknown(c["pools"], POOLS) and not unknown(c["runs"], RUNS)
    assert all(not unknown(t, TAG_LIMIT) for t in c["runs"]["tagConcurrencyLimits"])


def test_code_location_args_name_the_definitions():
    """The gRPC args point at the same module and attribute as workspace.yaml (and the Dockerfile's CMD)."""
    dep = load(ROOT / "deploy" / "helm" / "values.yaml")["dagster-user-deployments"]["deployments"][0]
    args = dep["dagsterApiGrpcArgs"]
    module = load(ROOT / "workspace.yaml")["load_from"][0]["python_module"]
    assert args[args.index("-m") + 1] == module["module_name"]
    assert args[args.index("-a") + 1] == module["attribute"]


def test_every_instance_has_the_projects_run_queue_and_pools():
    """dagster.yaml (local), deploy/dagster.postgres.yaml (compose, any host) and the chart's `concurrency`
    section (rendered into the instance the chart writes, camelCase to snake_case) must not drift apart."""
    local = load(ROOT / "dagster.yaml")["concurrency"]
    assert load(ROOT / "deploy" / "dagster.postgres.yaml")["concurrency"] == local
    chart = load(ROOT / "deploy" / "helm" / "values.yaml")["concurrency"]
    rendered = {
        "runs": {snake(k): v for k, v in chart["runs"].items()},
        "pools": {snake(k): v for k, v in chart["pools"].items()},
    }
    assert rendered == local
    assert local["pools"]["default_limit"] == 1  # one GPU-heavy step at a time on a one-GPU node
