"""Deployment without a cluster: the step jobs dagster-k8s would create for every step of
`transcribe_batch` (built with its own API), the executor choice, the Helm values, the compose
file and the Dockerfile."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from kubernetes.client import ApiClient

from opentranscribe_pipeline import executors
from opentranscribe_pipeline.definitions import defs

from .conftest import ROOT

MODEL_STEPS = {"transcribe", "diarize", "translate", "embed_chunks"}
SECRET = "literal-secret-value-do-not-ship"
SECRET_NAMES = re.compile(r"(PASSWORD|SECRET_ACCESS_KEY|ACCESS_KEY_ID|TOKEN)", re.I)
WORKSPACE_MODULE = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]["module_name"]


def step_job_manifest(node, image="ghcr.io/opentranscribe/opentranscribe-pipeline:cuda") -> dict:
    """The V1Job of one step, as K8sStepHandler builds it: the executor's config, the step's
    ``dagster-k8s/config`` tag, then the executor's ``per_step_k8s_config`` for its op."""
    config = executors.k8s_executor_config()
    job_config = DagsterK8sJobConfig(
        job_image=image, dagster_home="/opt/dagster/home", env_secrets=config["env_secrets"]
    )
    user_defined = (
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(node.definition.tags))
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    config["per_step_k8s_config"].get(node.definition.name, {})
                )
            )
        )
        .run_k8s_config
    )
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{node.name.replace('_', '-')}",
        user_defined_k8s_config=user_defined,
        pod_name=f"dagster-step-{node.name.replace('_', '-')}",
        component="step_worker",
    )
    return ApiClient().sanitize_for_serialization(job)


def test_k8s_step_jobs_request_a_gpu_for_exactly_the_model_steps(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # must never reach a manifest
    monkeypatch.setenv("HF_TOKEN", SECRET)
    job = defs.resolve_job_def("transcribe_batch")
    manifests = {node.name: step_job_manifest(node) for node in job.graph.nodes}
    cpu_steps = {"ingest", "attribute_speakers", "conversation_analytics", "score_quality", "summarize"}
    assert set(manifests) == MODEL_STEPS | cpu_steps
    gpu_steps = set()
    for name, manifest in manifests.items():
        pod = manifest["spec"]["template"]["spec"]
        [container] = pod["containers"]
        limits = (container.get("resources") or {}).get("limits") or {}
        if limits.get("nvidia.com/gpu") == "1":
            gpu_steps.add(name)
            assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        else:
            assert "nvidia.com/gpu" not in json.dumps(container.get("resources") or {})
            assert not pod.get("tolerations")
        # secrets arrive as references to Kubernetes secrets, never as values
        refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
        assert refs == ["opentranscribe-s3", "opentranscribe-hf", "opentranscribe-opensearch"]
        for env in container.get("env", []):
            assert "value" not in env or not SECRET_NAMES.search(env["name"]), env
        assert SECRET not in json.dumps(manifest)
    assert gpu_steps == MODEL_STEPS


def test_gpu_node_selector_and_tolerations_are_settings(monkeypatch):
    monkeypatch.setenv("OPENTRANSCRIBE_K8S_GPU_NODE_SELECTOR", "cloud.google.com/gke-accelerator=nvidia-l4")
    monkeypatch.setenv("OPENTRANSCRIBE_K8S_GPU_TOLERATIONS", '[{"key": "gpu", "operator": "Equal", "value": "yes"}]')
    pod = executors.model_step_k8s_config()["pod_spec_config"]
    assert pod == {
        "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes"}],
    }


@pytest.mark.parametrize(
    ("choice", "broker", "expected"),
    [
        (None, None, executors.LOCAL_EXECUTOR),  # multiprocess, steps forked from a forkserver
        (None, "redis://127.0.0.1:6379/0", "celery_gpu_queue"),  # the broker alone still picks Celery
        ("multiprocess", "redis://127.0.0.1:6379/0", executors.LOCAL_EXECUTOR),
        ("celery", "redis://127.0.0.1:6379/0", "celery_gpu_queue"),
        ("k8s", None, "k8s_gpu_steps"),
    ],
)
def test_executor_choice(monkeypatch, choice, broker, expected):
    for name, value in (("OPENTRANSCRIBE_EXECUTOR", choice), ("OPENTRANSCRIBE_CELERY_BROKER", broker)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    executor = executors.batch_executor()
    assert executor.name == expected


def test_executor_choice_refuses_unknown_values(monkeypatch):
    monkeypatch.setenv("OPENTRANSCRIBE_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="multiprocess, celery, k8s"):
        executors.batch_executor()
    monkeypatch.setenv("OPENTRANSCRIBE_EXECUTOR", "celery")
    monkeypatch.delenv("OPENTRANSCRIBE_CELERY_BROKER", raising=False)
    with pytest.raises(ValueError, match="OPENTRANSCRIBE_CELERY_BROKER"):
        executors.batch_executor()


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, node


def test_helm_values_name_the_image_the_code_location_and_only_secret_references():
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"].endswith("opentranscribe-pipeline")
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == WORKSPACE_MODULE
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is True and values["global"]["postgresqlSecretName"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["OPENTRANSCRIBE_EXECUTOR"] == "k8s"
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert secrets == set(env["OPENTRANSCRIBE_K8S_ENV_SECRETS"].split(","))
    assert {s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]} == secrets
    assert any(m["mountPath"] == "/models" for m in deployment["volumeMounts"])  # the model cache
    assert env["OPENTRANSCRIBE_CACHE"] == "/models"
    for path, value in _walk(values):
        leaf = path[-1]
        if SECRET_NAMES.search(leaf) and not leaf.endswith("SecretName"):
            pytest.fail(f"literal secret at {'.'.join(path)}: {value!r}")
    for e in deployment["env"]:
        assert not SECRET_NAMES.search(e["name"]) or "valueFrom" in e, e


COMPOSE = ROOT / "deploy" / "compose.yaml"
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": SECRET,
    "AWS_ACCESS_KEY_ID": "pipeline",
    "AWS_SECRET_ACCESS_KEY": SECRET,
}


def _compose_cli() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    return None


def test_compose_file_defines_the_one_host_stack():
    text = COMPOSE.read_text()
    assert SECRET not in text
    cli = _compose_cli()
    if cli:  # the real parser, when this machine has one
        proc = subprocess.run(
            [*cli, "-f", str(COMPOSE), "--profile", "celery", "config", "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, **COMPOSE_ENV},
        )
        assert proc.returncode == 0, proc.stderr
        compose = json.loads(proc.stdout)
    else:  # YAML (merge keys resolved) plus the checks compose itself would make
        compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"postgres", "s3", "opensearch", "code-server", "webserver", "daemon"} <= set(services)
    assert {"redis", "celery-gpu", "celery-cpu"} <= set(services)
    for name in ("redis", "celery-gpu", "celery-cpu"):
        assert services[name]["profiles"] == ["celery"]  # optional
    for name in ("postgres", "s3", "opensearch", "code-server", "webserver", "daemon"):
        assert "profiles" not in services[name]
    image = services["code-server"]["image"]
    assert all(services[n]["image"] == image for n in ("webserver", "daemon", "celery-gpu", "celery-cpu"))
    assert services["code-server"]["command"][:3] == ["dagster", "code-server", "start"]
    assert WORKSPACE_MODULE in services["code-server"]["command"]
    assert services["daemon"]["command"][0] == "dagster-daemon"
    assert services["webserver"]["command"][0] == "dagster-webserver"
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace-grpc.yaml").read_text())["load_from"][0]["grpc_server"]
    assert workspace["host"] == "code-server" and workspace["location_name"] == WORKSPACE_MODULE
    # GPUs go to the services that run model steps
    for name in ("code-server", "daemon", "celery-gpu"):
        [device] = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
    assert "deploy" not in services["celery-cpu"]
    if not cli:
        # every secret is a ${VAR} reference to deploy/.env
        for name, service in services.items():
            env = service.get("environment") or {}
            for key, value in env.items():
                if SECRET_NAMES.search(key):
                    assert str(value).startswith("${"), (name, key, value)
        assert services["code-server"]["environment"]["DAGSTER_PG_HOST"] == "postgres"
        assert services["code-server"]["environment"]["AWS_ENDPOINT_URL"].startswith("http://s3:")
        assert services["celery-gpu"]["environment"]["OPENTRANSCRIBE_EXECUTOR"] == "celery"


def test_dockerfile_has_cpu_and_cuda_targets_a_non_root_user_and_a_health_check():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [name for _, name in stages] == ["cpu", "cuda"]
    assert stages[1][0].startswith("nvidia/cuda:")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert len(users) == 2 and "root" not in users
    assert text.count("HEALTHCHECK") == 2 and "grpc-health-check" in text
