"""Kubernetes deployment: the run launcher of deploy/helm/values.yaml loads in dagster-k8s, the step Job that
k8s_job_executor would submit for a GPU-heavy asset asks for one GPU and passes the Kubernetes schema, and the
raw manifests in deploy/k8s pass it too (kubernetes-validate, strict: unknown fields fail). No cluster: the
objects are built by dagster-k8s's own code and checked offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.35.0"  # a schema kubernetes-validate 1.37 ships; the chart supports 1.2x+
GPU_ASSETS = {
    "student_chains",
    "latents",
    "jepa_checkpoint",
    "latent_decoder",
    "eval_report",
    "modes_report",
    "ab_gate",
    "calibration_adapter",
}


def values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def validate_k8s(doc: dict) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {e.message}") from None


@pytest.fixture
def kubeconfig(tmp_path) -> str:
    """A kubeconfig for a cluster that is never contacted (dagster-k8s only parses it when it loads)."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "none", "user": {"token": "unused"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none", "namespace": "rjepa"}}],
        "current-context": "none",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def run_launcher(kubeconfig: str):
    """The K8sRunLauncher the chart's instance ConfigMap describes, from values.yaml's runLauncher section plus
    what the chart fills in itself (instance ConfigMap, DAGSTER_HOME, Postgres secret, service account)."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    section = values()["runLauncher"]
    assert section["type"] == "K8sRunLauncher"
    cfg = {snake(k): v for k, v in section["config"]["k8sRunLauncher"].items()}
    if "run_k8s_config" in cfg:
        cfg["run_k8s_config"] = {snake(k): v for k, v in cfg["run_k8s_config"].items()}
    cfg |= {
        "load_incluster_config": False,  # the chart's pods use the in-cluster config; here a parsed kubeconfig
        "kubeconfig_file": kubeconfig,
        "instance_config_map": "rjepa-dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": "rjepa-postgresql-secret",
        "service_account_name": "rjepa-dagster",
        "job_namespace": "rjepa",
    }
    processed = process_config(K8sRunLauncher.config_type(), cfg)
    assert processed.success, [e.message for e in processed.errors]
    return K8sRunLauncher.from_config_value(None, processed.value)


def code_location_context():
    """What includeConfigInLaunchedRuns hands every run and step of the user deployment (its env, volumes,
    mounts, resources), as a dagster-k8s container context."""
    from dagster_k8s.container_context import K8sContainerContext

    dep = values()["dagster-user-deployments"]["deployments"][0]
    assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
    k8s = {"env": dep["env"], "volumes": dep["volumes"], "volume_mounts": dep["volumeMounts"]}
    k8s["resources"] = dep["resources"]
    return K8sContainerContext.create_from_config({"k8s": k8s})


def test_every_gpu_pool_asset_asks_kubernetes_for_one_gpu():
    from dagster_k8s.job import get_user_defined_k8s_config

    from rjepa_assets.definitions import defs

    graph = defs.get_repository_def().asset_graph
    tagged, pooled = set(), set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if "gpu" in node.pools:
            pooled.add(key.to_user_string())
        cfg = get_user_defined_k8s_config(node.assets_def.op.tags)
        if cfg.container_config:
            tagged.add(key.to_user_string())
            assert cfg.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in cfg.pod_spec_config[
                "tolerations"
            ]
    assert tagged == pooled == GPU_ASSETS  # a GPU-pool asset without its GPU request (or vice versa) fails here


def test_run_launcher_of_the_helm_values_loads_in_dagster_k8s(kubeconfig):
    launcher = run_launcher(kubeconfig)
    assert launcher.job_namespace == "rjepa" and launcher.dagster_home == "/opt/dagster/dagster_home"
    assert launcher.run_k8s_config["container_config"]["resources"]["requests"]["memory"] == "1Gi"
    assert "nvidia.com/gpu" not in json.dumps(launcher.run_k8s_config)  # the run pod only coordinates steps


def test_k8s_executor_is_chosen_by_env_and_its_run_config_validates(monkeypatch):
    from rjepa_assets.definitions import build_defs
    from rjepa_assets.defs.executor import executor_from_env
    from tests.assets.conftest import FAST_RUN_CONFIG

    monkeypatch.setenv("RJEPA_EXECUTOR", "k8s")
    job = build_defs().resolve_job_def("llm_pipeline_job")
    assert job.executor_def.name == "k8s"
    run_config = {
        **FAST_RUN_CONFIG,
        "execution": {"config": {"job_namespace": "rjepa", "max_concurrent": 4, "step_k8s_config": {}}},
    }
    assert dg.validate_run_config(job, run_config)
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(job, {**run_config, "execution": {"config": {"max_concurent": 4}}})
    assert executor_from_env({}).name == "in_process"
    assert executor_from_env({"RJEPA_EXECUTOR": "multiprocess"}).name == "multiprocess"
    with pytest.raises(ValueError, match="use one of in_process, multiprocess, k8s"):
        executor_from_env({"RJEPA_EXECUTOR": "kubernetes"})


def test_gpu_step_job_manifest_is_valid_kubernetes(kubeconfig):
    """The Job k8s_job_executor submits for the `latents` step, built as its launch_step builds it."""
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s import construct_dagster_k8s_job
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import get_user_defined_k8s_config
    from kubernetes.client import ApiClient

    from rjepa_assets.definitions import defs

    launcher = run_launcher(kubeconfig)
    run = DagsterRun(job_name="llm_pipeline_job", run_id="0f0e0d0c-0b0a-0908-0706-050403020100")
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False).merge(code_location_context())
    step_tags = defs.get_repository_def().asset_graph.get(dg.AssetKey("latents")).assets_def.op.tags
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config("rjepa:0.1.0", launcher),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-latents-0f0e0d0c",
        pod_name="dagster-step-latents-0f0e0d0c",
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/op": "latents", "dagster/run-id": run.run_id},
    )
    manifest = ApiClient().sanitize_for_serialization(job)
    validate_k8s(manifest)

    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"  # the op tag, merged with the deployment's
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RJEPA_EXECUTOR"]["value"] == "k8s" and env["RJEPA_STORAGE"]["value"] == "/data/store"
    assert {"name": "rjepa-store", "mountPath": "/data"} in container["volumeMounts"]
    assert {"name": "rjepa-store", "persistentVolumeClaim": {"claimName": "rjepa-store"}} in pod["volumes"]
    # the step reaches the same Postgres instance: DAGSTER_HOME and the password from the chart's secret
    assert env["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rjepa-postgresql-secret"


def test_raw_manifests_pass_the_kubernetes_schema():
    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
        ("PersistentVolumeClaim", "rjepa-store"),
        ("Deployment", "rjepa-service"),
        ("Service", "rjepa-service"),
    }
    for doc in docs:
        validate_k8s(doc)
    # the service and the code location share one claim, mounted where RJEPA_STORAGE points
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes mount it at once
    svc = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert svc["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    dep = values()["dagster-user-deployments"]["deployments"][0]
    assert dep["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    svc_env = {e["name"]: e["value"] for e in svc["containers"][0]["env"]}
    dep_env = {e["name"]: e["value"] for e in dep["env"]}
    assert svc_env["RJEPA_STORAGE"] == dep_env["RJEPA_STORAGE"]


def test_a_typo_in_a_manifest_fails_validation():
    doc = yaml.safe_load((DEPLOY / "k8s" / "storage.yaml").read_text())
    doc["spec"]["accesModes"] = doc["spec"].pop("accessModes")
    with pytest.raises(AssertionError, match="accesModes"):
        validate_k8s(doc)
