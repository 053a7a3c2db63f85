"""The chart's operator pod on a real node (kubelet + containerd, the image from `make image`): Running,
kubelet's probes passing, confined as the chart says, and verifying a rollback of the fixture agents
app, whose pods run on KWOK's nodes."""

from __future__ import annotations

import json
import stat
import sys
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from harness.agents import expected, helm_deploy, images, verification, wait_verdict
from harness.support import Cluster

from tests.image.pod import CHART, CONTAINER, RELEASE
from tests.node.node import TAINT_KEY, RealNode

# There is no kube-proxy: the `kubernetes` Service's IP leads nowhere, so a post-renderer (as a
# kustomize overlay would) points the operator at the apiserver; an explicit env wins over kubelet's.
POST_RENDERER = """#!{python}
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for d in docs:
    if d["kind"] == "Deployment":
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] == {container!r}:
                c["env"] += [{{"name": "KUBERNETES_SERVICE_HOST", "value": {host!r}}},
                             {{"name": "KUBERNETES_SERVICE_PORT", "value": {port!r}}}]
sys.stdout.write(yaml.safe_dump_all(docs))
"""


def install_chart_on_the_node(cluster: Cluster, node: RealNode, namespace: str, image: str, tmp: Path) -> None:
    argocd_namespace = cluster.create_namespace(f"{namespace}-argocd")
    repository, _, tag = image.rpartition(":")
    values = {
        "controller": {"namespaces": [namespace]},
        "argocd": {"namespace": argocd_namespace},
        "detection": {"applications": [{"name": "agents", "verificationNamespace": namespace}]},
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},  # imported, never pulled
        "nodeSelector": {"kubernetes.io/hostname": node.name},
        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    server = urllib.parse.urlparse(
        json.loads(cluster.kubectl("config", "view", "--minify", "-o", "json").stdout)["clusters"][0]["cluster"][
            "server"
        ]
    )
    renderer = tmp / "post-render"
    renderer.write_text(
        POST_RENDERER.format(python=sys.executable, container=CONTAINER, host=node.ip, port=str(server.port))
    )
    renderer.chmod(renderer.stat().st_mode | stat.S_IXUSR)
    cluster.helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "-f",
        str(tmp / "values.yaml"),
        "--post-renderer",
        str(renderer),
    )


def operator_pod(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    pods = cluster.get("-n", namespace, "pods", "-l", "app.kubernetes.io/name=rollback-verifier")["items"]
    return pods[0] if len(pods) == 1 else None


def ready(pod: dict[str, Any] | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def probe_successes(node: RealNode, pod: str, probe: str) -> float:
    text = node.kubelet_get("/metrics/probes")
    total = 0.0
    for line in text.splitlines():
        labels = ('pod="' + pod + '"', 'probe_type="' + probe + '"', 'result="successful"')
        if line.startswith("prober_probe_total{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def host_pid(node: RealNode, container_id: str) -> int:
    tasks = node.ctr("tasks", "ls").stdout.splitlines()[1:]
    return int(next(line.split()[1] for line in tasks if line.split()[0] == container_id))


def test_the_charts_pod_runs_on_a_real_node_and_verifies_a_rollback(
    cluster: Cluster, namespace: str, real_node: RealNode, built_image: dict[str, str], tmp_path: Path
) -> None:
    helm_deploy(cluster, namespace, images("A"))
    helm_deploy(cluster, namespace, images("B"))
    cluster.helm("rollback", "agents", "1", "-n", namespace)

    install_chart_on_the_node(cluster, real_node, namespace, f"{built_image['IMAGE']}:{built_image['TAG']}", tmp_path)
    try:
        pod = Cluster.wait_for(
            lambda: (p := operator_pod(cluster, namespace)) and ready(p) and p, 180, "the operator pod to be Ready"
        )
    except AssertionError:
        print(json.dumps(operator_pod(cluster, namespace), indent=1)[-4000:])
        print(real_node.log("kubelet")[-4000:])
        raise
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    became_ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
    print(
        f"real node: pod created -> Ready in {(datetime.fromisoformat(became_ready) - created).total_seconds():.0f} s"
    )
    assert pod["spec"]["nodeName"] == real_node.name
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and "running" in status["state"], status
    # containerd reports a locally imported image by its bare config digest (no repo@).
    assert status["imageID"] == built_image["CONFIG_DIGEST"], status

    # The kernel's view of the operator's process: the chart's securityContext, applied by kubelet.
    pid = host_pid(real_node, status["containerID"].split("://", 1)[1])
    proc = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    assert proc["Uid"].split() == ["10001"] * 4 and "10001" in proc["Groups"].split()
    assert int(proc["CapEff"], 16) == int(proc["CapBnd"], 16) == 0
    assert (proc["NoNewPrivs"].strip(), proc["Seccomp"].strip()) == ("1", "2")
    root = next(line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert "ro" in root.split()[5].split(",")

    targets = [
        {"name": "agents", "image": expected("A", "registry.example/lab/jangar-control-plane")},
        {"name": "agents-controllers", "image": expected("A")},
    ]
    cluster.apply(verification("on-a-real-node", {"targets": targets, "timeoutSeconds": 90}), namespace)
    verdict = wait_verdict(cluster, namespace, "on-a-real-node", timeout=90)["status"]
    assert (verdict["phase"], verdict["reason"]) == ("Succeeded", "Verified"), verdict

    # Kubelet's liveness probe (after 10 s, every 20 s) passed too, by its own metrics.
    Cluster.wait_for(
        lambda: probe_successes(real_node, pod["metadata"]["name"], "Liveness") > 0,
        60,
        "a successful liveness probe in kubelet's metrics",
        interval=1,
    )
    assert probe_successes(real_node, pod["metadata"]["name"], "Readiness") > 0
    pod = operator_pod(cluster, namespace)
    assert pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] == 0
    events = cluster.get(
        "-n", namespace, "events", "--field-selector", f"involvedObject.name={pod['metadata']['name']}"
    )
    # Probes may fail while the operator starts (readiness has no initial delay; a start slower than
    # liveness' 10 s initial delay on a loaded machine costs one of its 3 allowed failures): what may
    # not happen is a restart, a back-off or a failed start.
    bad = [
        f"{e['reason']}: {e.get('message')}" for e in events["items"] if e["reason"] in ("BackOff", "Failed", "Killing")
    ]
    assert not bad, bad
