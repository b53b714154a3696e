"""How batch runs execute their steps.

Default (one machine): Dagster's multiprocess executor; model steps take turns through the
``gpu`` concurrency pool (``dagster.yaml``).

Production over several machines: set ``OPENTRANSCRIBE_CELERY_BROKER`` (read when the code
location loads) and every step of ``transcribe_batch`` becomes a Celery task. Model steps
(``transcribe``, ``diarize``) carry the tag ``dagster-celery/queue: gpu`` and go to the ``gpu``
queue; the rest go to ``dagster``. Serialise inference per device by running, on each GPU
host, one worker per device with ``--concurrency 1`` on the ``gpu`` queue; CPU workers take
``dagster``::

    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q gpu -n gpu0 -- --concurrency 1
    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q dagster -n cpu

Kubernetes (``OPENTRANSCRIBE_EXECUTOR=k8s``, with the Helm chart's K8sRunLauncher): every
step becomes a Kubernetes job (dagster-k8s ``k8s_job_executor``). The executor's
``per_step_k8s_config`` asks, for each model step, for ``nvidia.com/gpu: 1`` plus the node
selector and tolerations of ``OPENTRANSCRIBE_K8S_GPU_NODE_SELECTOR`` /
``OPENTRANSCRIBE_K8S_GPU_TOLERATIONS`` (read only when that executor is chosen, not when the
assets are defined); CPU steps ask for no GPU. Step pods take their secrets from the Kubernetes secrets named in
``OPENTRANSCRIBE_K8S_ENV_SECRETS`` (``envFrom``: references, never values).

``OPENTRANSCRIBE_EXECUTOR`` picks one of ``multiprocess``, ``celery``, ``k8s``; unset, Celery
when a broker is configured, else multiprocess (what it always did).
"""

from __future__ import annotations

import dagster as dg

from . import settings
from .settings import CELERY_QUEUE_TAG, GPU_QUEUE

GPU_RESOURCE = "nvidia.com/gpu"


def model_step_k8s_config() -> dict:
    """The ``dagster-k8s/config`` of a model step: one GPU, on the GPU nodes."""
    pod_spec: dict = {}
    if selector := settings.k8s_gpu_node_selector():
        pod_spec["node_selector"] = selector
    if tolerations := settings.k8s_gpu_tolerations():
        pod_spec["tolerations"] = tolerations
    config: dict = {"container_config": {"resources": {"limits": {GPU_RESOURCE: "1"}, "requests": {GPU_RESOURCE: "1"}}}}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return config


# op tags of the model steps: the Celery `gpu` queue (a constant: nothing is read from the
# environment when the assets are defined; the Kubernetes GPU request is the k8s executor's)
MODEL_STEP_TAGS = {CELERY_QUEUE_TAG: GPU_QUEUE}

# the model steps (the ops in the `gpu` pool; test_concurrency checks the two lists agree)
MODEL_STEPS = ("transcribe", "diarize", "translate", "embed_chunks")


def k8s_executor_config() -> dict:
    """``k8s_job_executor`` config from the settings: secrets by name, the namespace, and for
    each model step one GPU on the GPU nodes (``per_step_k8s_config``, keyed by op name)."""
    step = model_step_k8s_config()
    config: dict = {
        "env_secrets": settings.k8s_env_secrets(),
        "per_step_k8s_config": {name: step for name in MODEL_STEPS},
    }
    if namespace := settings.k8s_namespace():
        config["job_namespace"] = namespace
    return config


LOCAL_EXECUTOR = "multiprocess_forkserver"


PRELOAD = "opentranscribe_pipeline.preload"  # the code location and the instance's storage
PRELOAD_MODELS = "opentranscribe_pipeline.preload.models"  # that plus torch, pyannote, whisperx


def local_executor(preload: str = PRELOAD) -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor with its step processes forked from a forkserver that
    imported the code location once per run, instead of each step process starting Python and
    importing it again (5-7 s a step on 2 cores: most of a short batch's wall time). The
    forkserver lives as long as the run (see ``runner.execute``; the CLI keeps one for all
    its runs of one command and starts it first, ``runner.shared_forkserver``), so a step
    sees the environment its run started with. ``preload`` names what the forkserver imports
    (:mod:`opentranscribe_pipeline.preload`): with ``PRELOAD_MODELS`` the model steps also
    find torch and pyannote imported (6 s a model step on 2 cores)."""
    return dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": [preload]}}}, name=LOCAL_EXECUTOR
    )


def local_batch_preload() -> str | None:
    """What the forkserver of a ``transcribe_batch`` run executed on this machine imports
    (``PRELOAD_MODELS``), or None when its steps are not forked here (Celery, Kubernetes)."""
    try:
        return PRELOAD_MODELS if batch_executor().name == LOCAL_EXECUTOR else None
    except ValueError:  # a bad executor setting: the code location's load says so
        return None


def batch_executor() -> dg.ExecutorDefinition:
    """The executor ``OPENTRANSCRIBE_EXECUTOR`` names; unset: Celery when a broker is
    configured, else the local multiprocess one (:func:`local_executor`)."""
    choice = settings.executor()
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="k8s_gpu_steps")
    if choice == "multiprocess":
        return local_executor(PRELOAD_MODELS)
    broker = settings.celery_broker()
    if not broker:
        if choice == "celery":
            raise ValueError("OPENTRANSCRIBE_EXECUTOR=celery needs OPENTRANSCRIBE_CELERY_BROKER")
        return local_executor(PRELOAD_MODELS)
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": broker, "backend": settings.celery_backend()}, name="celery_gpu_queue")
