"""Benchmark 6: the cost of Argo CD destination clusters, with 1, 3 and 10 of them.

A second local cluster (the spoke, `rv-bench-spoke`) runs one Deployment (2 replicas, Ready). The
bench cluster is the hub: it holds K Argo CD cluster Secrets in namespace `argocd`, all for the
spoke under different names (`bench-spoke-0..K-1`, each with its own token of the documented
reader Role), so that each is a cluster of its own to the operator (a connection and a pair of
watches each) while one spoke is all this 2-core machine has to run. Per K, an operator of its own:

1. idle: started, nothing to verify: its VmRSS;
2. cold verdicts: K verifications at once, one per cluster (`spec.destination.name`), of the
   Deployment the spoke runs: time from their creation to `Succeeded`, as the bench's own watch
   receives it (each one connects, lists, watches and re-reads its cluster);
3. held: K verifications, one per cluster, that cannot succeed (another image, long timeout), so the
   K connections stay open: VmRSS, threads, and the watches the spoke's API server counts
   (apiserver_longrunning_requests, namespaced pods and deployments: only the operator's);
4. warm verdicts: K more succeeding verifications while the clusters are connected.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from harness.agents import expected, verification
from harness.spoke import Spoke
from harness.support import Cluster, Operator, running_operator
from kubernetes import client, watch

from bench.common import bench_api, cluster_down, cluster_up, deployments_manifest, new_namespace, proc_status, summary

SPOKE_NAME = "rv-bench-spoke"
ARGOCD_NS = "argocd"
TARGET_NS = "bench-dest"
IMAGE = expected("A")
CLUSTER_COUNTS = (1, 3, 10)


def _verdict_times(
    api: client.ApiClient, namespace: str, names: set[str], timeout: float
) -> dict[str, tuple[float, str]]:
    """Watch the namespace's RollbackVerifications until each of `names` has a verdict: (monotonic
    receive time, phase) per name."""
    seen: dict[str, tuple[float, str]] = {}
    custom = client.CustomObjectsApi(api)
    w = watch.Watch()
    deadline = time.monotonic() + timeout
    for event in w.stream(
        custom.list_namespaced_custom_object, "gitops.proompteng.ai", "v1alpha1", namespace, "rollbackverifications",
        timeout_seconds=int(timeout),
    ):  # fmt: skip
        obj = event["object"]
        name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
        if name in names and phase in ("Succeeded", "Failed") and name not in seen:
            seen[name] = (time.monotonic(), str(phase))
        if names <= seen.keys() or time.monotonic() > deadline:
            w.stop()
    return seen


def _verdicts(
    hub: Cluster, api: client.ApiClient, ns: str, names: list[str], specs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Create the verifications at once; seconds from the create to each verdict as watched."""
    result: dict[str, dict[str, tuple[float, str]]] = {}
    watcher = threading.Thread(target=lambda: result.update(v=_verdict_times(api, ns, set(names), 180)))
    watcher.start()
    time.sleep(0.5)  # the watch is open before anything is created
    created = time.monotonic()
    hub.kubectl(
        "-n",
        ns,
        "apply",
        "-f",
        "-",
        input="\n---\n".join(verification(n, s) for n, s in zip(names, specs, strict=True)),
    )
    watcher.join(200)
    seen = result.get("v", {})
    phases = sorted({phase for _, phase in seen.values()})
    if set(seen) != set(names) or phases != ["Succeeded"]:
        raise RuntimeError(f"verdicts {len(seen)}/{len(names)}, phases {phases}")
    return summary([round(t - created, 3) for t, _ in seen.values()])


def _one(
    hub: Cluster, spoke: Spoke, api: client.ApiClient, workdir: Path, *, count: int, tokens: list[str]
) -> dict[str, Any]:
    ns = new_namespace(hub, f"bench-dest-{count}")
    names = [f"bench-spoke-{i}" for i in range(count)]
    hub.kubectl(
        "-n", ARGOCD_NS, "delete", "secret", "-l", "argocd.argoproj.io/secret-type=cluster", "--ignore-not-found"
    )
    for name, token in zip(names, tokens, strict=False):
        hub.apply(spoke.cluster_secret(name, token, namespace=ARGOCD_NS))
    settings = workdir / f"settings-{count}.yaml"
    settings.write_text(
        json.dumps(
            {"argocdNamespace": ARGOCD_NS, "detection": {"enabled": False}, "destinations": {"enabled": True},
             "trust": {"destinationClusters": {ns: names}, "targetNamespaces": {ns: [TARGET_NS]}}}
        )
    )  # fmt: skip
    op: Operator
    with running_operator(hub, [ns], workdir / f"op-{count}", settings) as op:
        time.sleep(3)
        idle = proc_status(op.process.pid)
        base_watches = spoke.watches()

        def specs(image: str, timeout: int) -> list[dict[str, Any]]:
            return [
                {"destination": {"name": n}, "targets": [{"name": "app", "namespace": TARGET_NS, "image": image}],
                 "timeoutSeconds": timeout}
                for n in names
            ]  # fmt: skip

        cold = _verdicts(hub, api, ns, [f"cold-{i}" for i in range(count)], specs(IMAGE, 120))
        hub.kubectl("-n", ns, "apply", "-f", "-", input="\n---\n".join(
            verification(f"held-{i}", s) for i, s in enumerate(specs(expected("B"), 1800))
        ))  # fmt: skip

        def held() -> bool:
            items = hub.get("-n", ns, "rbv")["items"]
            judged = [
                i for i in items if i["metadata"]["name"].startswith("held-") and (i.get("status") or {}).get("targets")
            ]
            return len(judged) == count

        hub.wait_for(held, timeout=120, what=f"{count} held verifications judging the spoke", interval=0.5)
        time.sleep(2)
        connected = {**proc_status(op.process.pid), "spoke_watches": spoke.watches() - base_watches}
        warm = _verdicts(hub, api, ns, [f"warm-{i}" for i in range(count)], specs(IMAGE, 120))
    hub.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return {
        "clusters": count,
        "idle": idle,
        "connected": connected,
        "cold_verdict_seconds": cold,
        "warm_verdict_seconds": warm,
    }


def run(kubeconfig: Path, workdir: Path) -> dict[str, Any]:
    hub = Cluster(kubeconfig)
    hub.install_crd()
    hub.kubectl("create", "namespace", ARGOCD_NS, check=False)
    api = bench_api(kubeconfig)
    spoke = Spoke(Cluster(cluster_up(SPOKE_NAME)), SPOKE_NAME)
    try:
        spoke.cluster.kubectl("create", "namespace", TARGET_NS, check=False)
        spoke.cluster.kubectl("-n", TARGET_NS, "apply", "-f", "-", input=deployments_manifest(["app"], IMAGE, 2))
        spoke.cluster.rollout_status(TARGET_NS, "app", timeout=120)
        tokens = [spoke.token(TARGET_NS, f"reader-{i}") for i in range(max(CLUSTER_COUNTS))]
        return {"runs": [_one(hub, spoke, api, workdir, count=k, tokens=tokens) for k in CLUSTER_COUNTS]}
    finally:
        cluster_down(SPOKE_NAME)
