"""Builders of Deployment and Pod dicts shaped as the API server returns them, for pure-core tests."""

from __future__ import annotations

from typing import Any

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_PLATFORM = "sha256:" + "c" * 64
IMAGE_A = f"registry.example/lab/jangar:aaa@{DIGEST_A}"
IMAGE_B = f"registry.example/lab/jangar:bbb@{DIGEST_B}"


def deployment(
    name: str = "agents",
    namespace: str = "agents",
    *,
    images: dict[str, str] | None = None,
    init_images: dict[str, str] | None = None,
    replicas: int | None = 2,
    generation: int = 2,
    observed: int = 2,
    updated: int = 2,
    total: int = 2,
    available: int = 2,
    paused: bool = False,
    progressing_reason: str | None = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    images = images if images is not None else {"app": IMAGE_A}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": c, "image": i} for c, i in images.items()]},
        },
    }
    if init_images:
        spec["template"]["spec"]["initContainers"] = [{"name": c, "image": i} for c, i in init_images.items()]
    if replicas is not None:
        spec["replicas"] = replicas
    if paused:
        spec["paused"] = True
    conditions = []
    if progressing_reason:
        conditions.append({"type": "Progressing", "status": "True", "reason": progressing_reason, "message": "m"})
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": conditions,
        },
    }


def pod(
    name: str,
    app: str = "agents",
    namespace: str = "agents",
    *,
    images: dict[str, str] | None = None,
    image_ids: dict[str, str] | None = None,
    init_images: dict[str, str] | None = None,
    ready: bool = True,
    terminating: bool = False,
) -> dict[str, Any]:
    images = images if images is not None else {"app": IMAGE_A}

    def runtime_id(image: str) -> str:
        return "docker-pullable://" + image.split(":", 1)[0] + "@" + image.rsplit("@", 1)[-1] if "@" in image else ""

    ids = image_ids if image_ids is not None else {c: runtime_id(i) for c, i in images.items()}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {"app": app}}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-26T00:00:00Z"
    init_images = init_images or {}
    return {
        "metadata": meta,
        "spec": {
            "containers": [{"name": c, "image": i} for c, i in images.items()],
            "initContainers": [{"name": c, "image": i} for c, i in init_images.items()],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": c, "image": i, "imageID": ids.get(c, ""), "ready": ready} for c, i in images.items()
            ],
            "initContainerStatuses": [
                {"name": c, "image": i, "imageID": runtime_id(i), "ready": False} for c, i in init_images.items()
            ],
        },
    }
