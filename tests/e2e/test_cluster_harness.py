"""The local cluster is the real thing: the Deployment controller, the scheduler, CRD validation,
and KWOK pods that report image digests (or never get Ready when a test asks)."""

from __future__ import annotations

import json

from harness.support import Cluster

DIGEST_A = "sha256:" + "1" * 64
DIGEST_B = "sha256:" + "2" * 64


def deployment(name: str, image: str, *, never_ready: bool = False, deadline: int = 600) -> str:
    labels = {"app": name, **({"rv-test-never-ready": "true"} if never_ready else {})}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "progressDeadlineSeconds": deadline,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        }
    )


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict]:
    return cluster.get("-n", namespace, "pods", "-l", f"app={app}")["items"]


def test_a_digest_pinned_deployment_rolls_out_on_kwok_nodes(cluster: Cluster, namespace: str) -> None:
    image = f"registry.example/lab/app:v1@{DIGEST_A}"
    cluster.apply(deployment("web", image), namespace)
    cluster.rollout_status(namespace, "web")

    running = pods(cluster, namespace, "web")
    assert len(running) == 2
    nodes = {n["metadata"]["name"] for n in cluster.get("nodes")["items"]}
    for pod in running:
        assert pod["spec"]["nodeName"] in nodes, "the real scheduler placed the pod on a KWOK node"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"
        (status,) = pod["status"]["containerStatuses"]
        assert status["imageID"] == f"registry.example/lab/app@{DIGEST_A}"
    dep = cluster.get("-n", namespace, "deployment", "web")
    assert dep["status"]["availableReplicas"] == 2


def test_changing_the_image_rolls_out_a_new_replicaset(cluster: Cluster, namespace: str) -> None:
    cluster.apply(deployment("web", f"registry.example/lab/app:v1@{DIGEST_A}"), namespace)
    cluster.rollout_status(namespace, "web")
    cluster.apply(deployment("web", f"registry.example/lab/app:v2@{DIGEST_B}"), namespace)
    cluster.rollout_status(namespace, "web")

    replicasets = cluster.get("-n", namespace, "replicasets", "-l", "app=web")["items"]
    assert len(replicasets) == 2
    by_replicas = sorted(replicasets, key=lambda rs: rs["spec"]["replicas"])
    assert by_replicas[0]["spec"]["replicas"] == 0  # the old one, scaled down by the controller
    assert DIGEST_B in by_replicas[1]["spec"]["template"]["spec"]["containers"][0]["image"]
    cluster.wait_for(
        lambda: (
            {p["status"]["containerStatuses"][0]["imageID"].split("@")[1] for p in pods(cluster, namespace, "web")}
            == {DIGEST_B}
        ),
        timeout=30,
        what="the old pods to go",
    )


def test_tag_only_images_get_a_stable_runtime_digest(cluster: Cluster, namespace: str) -> None:
    # A real runtime resolves a tag to a digest; KWOK's stage derives one from the image name.
    cluster.apply(deployment("web", "registry.example/lab/app:v1"), namespace)
    cluster.rollout_status(namespace, "web")
    ids = {p["status"]["containerStatuses"][0]["imageID"] for p in pods(cluster, namespace, "web")}
    assert len(ids) == 1
    (image_id,) = ids
    assert image_id.startswith("registry.example/lab/app@sha256:") and len(image_id.split(":")[-1]) == 64


def test_pods_that_never_get_ready_end_in_progress_deadline_exceeded(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        deployment("stuck", f"registry.example/lab/app:v1@{DIGEST_A}", never_ready=True, deadline=3),
        namespace,
    )

    def deadline_exceeded() -> bool:
        conditions = cluster.get("-n", namespace, "deployment", "stuck").get("status", {}).get("conditions", [])
        return any(c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions)

    cluster.wait_for(deadline_exceeded, timeout=60, what="ProgressDeadlineExceeded")
    for pod in pods(cluster, namespace, "stuck"):
        assert pod["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "False"


def test_the_crd_rejects_objects_that_break_its_schema(cluster: Cluster, namespace: str) -> None:
    cluster.install_crd()
    bad = {
        "apiVersion": "gitops.proompteng.ai/v1alpha1",
        "kind": "RollbackVerification",
        "metadata": {"name": "bad"},
        "spec": {"timeoutSeconds": -5, "digestPolicy": "Sometimes"},
    }
    proc = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert "spec.timeoutSeconds" in proc.stderr and "spec.digestPolicy" in proc.stderr
    good = {**bad, "spec": {}}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(good))
    stored = cluster.get("-n", namespace, "rbv", "bad")
    assert stored["spec"]["timeoutSeconds"] == 600 and stored["spec"]["digestPolicy"] == "Auto"
