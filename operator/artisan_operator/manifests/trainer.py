"""The children of a TrainingRun (pure): checkpoint PVC, trainer config, Job, metrics Service.

The trainer container runs::

    artisan-trainer train --config /etc/artisan/trainer.yaml --checkpoint-dir /checkpoints \\
        --metrics-port 9090 --summary-json /checkpoints/summary.json \
        --resume [--resume-from-step S]

``--resume`` is always there: the trainer starts fresh on an empty checkpoint directory, and any
new pod of a Job (after a suspend, a Kueue preemption, an operator restart from a checkpoint)
continues from the newest sha256-verified checkpoint instead of step 0.

``--resume-from-step S`` is added only to the Job of the attempt that a rollback to S created (the
trainer loads the newest verified checkpoint at or before S and drops newer ones). A pod template is
immutable, so a second pod of that same Job (suspend/resume, preemption) gets the flag again and
must not drop what the attempt saved since. The Job therefore also carries
``ARTISAN_TRAINER_ROLLBACK_ID`` (``<job>@<S>``, unique per rollback): the trainer applies the drop
once per id (it records the applied id beside its checkpoints) and otherwise just resumes.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import yaml

from artisan_common.training import TrainingConfig
from artisan_operator.api.training_run import TrainingRunSpec
from artisan_operator.manifests.common import (
    Manifest,
    Owner,
    container_resources,
    container_security_context,
    object_meta,
    pod_scheduling,
    pod_security_context,
    selector_labels,
    standard_labels,
)

APP_NAME = "artisan-trainer"
CONFIG_KEY = "trainer.yaml"
CONFIG_DIR = "/etc/artisan"
CHECKPOINT_DIR = "/checkpoints"
METRICS_PORT = 9090
TERMINATION_LOG = "/dev/termination-log"
"""Where the trainer writes its final JSON at exit (the pod's terminationMessagePath)."""
ATTEMPT_LABEL = "artisan.dev/attempt"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def trainer_pvc_name(run: str) -> str:
    return f"{run}-checkpoints"


def trainer_configmap_name(run: str) -> str:
    return f"{run}-trainer-config"


def trainer_service_name(run: str) -> str:
    return f"{run}-trainer-metrics"


def trainer_job_name(run: str, attempt: int) -> str:
    """Deterministic per attempt, so a restarted operator finds the Job it created before."""
    return f"{run}-trainer-{attempt}"


def training_config(spec: TrainingRunSpec) -> TrainingConfig:
    """The algorithm part of the spec: exactly what the trainer's config file holds."""
    fields = set(TrainingConfig.model_fields)
    return TrainingConfig.model_validate({k: v for k, v in spec if k in fields})


# libyaml's emitter when PyYAML has it (same text, a third of the time: this runs every pass).
_SAFE_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@functools.lru_cache(maxsize=256)
def config_yaml(config_json: str) -> str:
    """The trainer config file for a config's JSON; remembered, as every pass renders it again."""
    return str(yaml.dump(json.loads(config_json), Dumper=_SAFE_DUMPER, sort_keys=True))


def build_trainer_configmap(owner: Owner, spec: TrainingRunSpec) -> Manifest:
    config = training_config(spec)
    text = config_yaml(config.model_dump_json(by_alias=True, exclude_none=True))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            owner,
            trainer_configmap_name(owner.name),
            standard_labels(owner, name=APP_NAME, component="trainer-config"),
        ),
        "data": {CONFIG_KEY: text},
    }


def build_trainer_pvc(owner: Owner, spec: TrainingRunSpec) -> Manifest:
    storage = spec.checkpoints.storage
    pvc_spec: Manifest = {
        "accessModes": [storage.access_mode],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        pvc_spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(
            owner,
            trainer_pvc_name(owner.name),
            standard_labels(owner, name=APP_NAME, component="checkpoints"),
        ),
        "spec": pvc_spec,
    }


def build_trainer_service(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(
            owner,
            trainer_service_name(owner.name),
            standard_labels(owner, name=APP_NAME, component="trainer"),
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, name=APP_NAME, component="trainer"),
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def trainer_args(*, resume_from_step: int | None = None) -> list[str]:
    args = [
        "train",
        "--config",
        f"{CONFIG_DIR}/{CONFIG_KEY}",
        "--checkpoint-dir",
        CHECKPOINT_DIR,
        "--metrics-port",
        str(METRICS_PORT),
        "--summary-json",
        f"{CHECKPOINT_DIR}/summary.json",
    ]
    args.append("--resume")
    if resume_from_step is not None:
        args += ["--resume-from-step", str(resume_from_step)]
    return args


def build_trainer_job(
    owner: Owner,
    spec: TrainingRunSpec,
    *,
    image: str,
    attempt: int = 0,
    resume_from_step: int | None = None,
) -> Manifest:
    """The trainer Job of one attempt.

    With a Kueue ``queueName`` the Job is created suspended: Kueue unsuspends it on admission.
    """
    labels = {
        **standard_labels(owner, name=APP_NAME, component="trainer"),
        ATTEMPT_LABEL: str(attempt),
    }
    if spec.queue_name:
        labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    pod_labels = {k: v for k, v in labels.items() if k != KUEUE_QUEUE_LABEL}
    job_name = trainer_job_name(owner.name, attempt)
    container: Manifest = {
        "name": "trainer",
        "image": spec.image or image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["artisan-trainer"],
        "args": trainer_args(resume_from_step=resume_from_step),
        "env": [
            {"name": "ARTISAN_TRAINER_SEED", "value": str(spec.seed)},
            {"name": "ARTISAN_TRAINER_NUM_ENVS", "value": str(spec.num_envs)},
            {"name": "ARTISAN_TRAINER_RUN", "value": owner.name},
            {"name": "ARTISAN_TRAINER_TERMINATION_LOG", "value": TERMINATION_LOG},
            *(
                [{"name": "ARTISAN_TRAINER_ROLLBACK_ID", "value": f"{job_name}@{resume_from_step}"}]
                if resume_from_step is not None
                else []
            ),
        ],
        # The final step, reward, checkpoints, rollbacks and outcome reach the operator through the
        # pod status even after the last scrape; on a crash before it is written, the log tail.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": container_resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": trainer_configmap_name(owner.name)}},
            {
                "name": "checkpoints",
                "persistentVolumeClaim": {"claimName": trainer_pvc_name(owner.name)},
            },
            {"name": "tmp", "emptyDir": {}},
        ],
        **pod_scheduling(spec.scheduling),
    }
    job_spec: Manifest = {
        "backoffLimit": 0,
        "suspend": spec.suspend or spec.queue_name is not None,
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(owner, job_name, labels),
        "spec": job_spec,
    }


def job_patchable_fields(spec: TrainingRunSpec, *, emergency_stop: bool = False) -> tuple[str, ...]:
    """What may change on an existing Job (its pod template is immutable).

    A queued Job's ``suspend`` belongs to Kueue after creation, so it is not patched, except to
    suspend it for an emergency stop (then Kueue gets it back: resuming it is Kueue's to decide).
    """
    fields = ("metadata.labels", "metadata.annotations", "spec.activeDeadlineSeconds")
    return fields if spec.queue_name and not emergency_stop else (*fields, "spec.suspend")
