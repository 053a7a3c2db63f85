"""Benchmark 5: the operator cluster-wide on a cluster of many Deployments and KWOK pods, before and
after its Deployment/Pod caches moved from kopf's indexes to informers per verified namespace.

One run measures both: the "before" operator is the source of the commit just before that change
(extracted with `git archive`, imported first through PYTHONPATH), the "after" one is this checkout.
Each is started `--all-namespaces` with one verification waiting in a small probe namespace
(explicit image, the probe Deployment already rolled out), and measured:

- first verdict: from the process start to the probe's verdict seen by this bench (and /readyz);
- RSS (VmRSS) at that verdict and 20 s later;
- CPU per event: the operator's CPU seconds over a churn window (`kubectl rollout restart` of the
  Deployments of one namespace) divided by the Pod and Deployment events of that namespace (counted
  by the bench's own watch), (a) in a namespace nothing verifies, (b) in a namespace where one
  verification is Running.

The figures for 10,000 pods are a projection (linear in the cluster's objects for "before"'s
start-up, and flat for "after", whose caches cover the verified namespaces only), not a measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path
from typing import Any

from harness.agents import expected, verification
from harness.support import ROOT, Cluster, running_operator

from bench.common import Recorder, bench_api, cpu_seconds, deployments_manifest, new_namespace, proc_status

PROBE_NS = "scale-probe"
REPLICAS = 3
PER_NAMESPACE = 100
CHURN_DEPLOYMENTS = 30
VERDICT_TIMEOUT = 300


def _baseline_revision() -> str:
    """The commit before the one that dropped kopf's indexes (the last to touch `@kopf.index`)."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%H", "-S", "@kopf.index", "--", "operator/rollback_verifier/handlers.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{out}^"


def _extract(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", revision, "operator"], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "operator"


def _ready_pods(api: Any) -> int:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_pod_for_all_namespaces(
        field_selector="status.phase=Running", _preload_content=False, _request_timeout=120
    )
    return len(json.loads(pods.data)["items"])


def _http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _phase(cluster: Cluster, ns: str, name: str) -> str | None:
    obj = cluster.get("-n", ns, "rbv", name)
    return (obj.get("status") or {}).get("phase")


def _churn(cluster: Cluster, api: Any, pid: int, ns: str) -> dict[str, Any]:
    """Restart the Deployments of `ns`; the operator's CPU over the window per event the namespace saw."""
    rec = Recorder(api, ns).start()
    try:
        mark = rec.mark()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        cluster.kubectl("-n", ns, "rollout", "restart", "deployment")
        for i in range(CHURN_DEPLOYMENTS):
            cluster.kubectl("-n", ns, "rollout", "status", f"deployment/churn-{i:04d}", "--timeout=180s")
        time.sleep(3)  # the last deletions' events
        cpu, seconds = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        events = [e for e in rec.snapshot()[mark:] if e.kind in ("pod", "deployment")]
    finally:
        rec.stop()
    return {
        "events": len(events),
        "window_seconds": round(seconds, 1),
        "operator_cpu_seconds": round(cpu, 3),
        "cpu_ms_per_event": round(1000 * cpu / max(len(events), 1), 3),
    }


def _variant(
    cluster: Cluster, api: Any, workdir: Path, source: Path | None, *, image: str, verified_ns: str, churn_ns: str
) -> dict[str, Any]:
    for name in ("probe", "held"):
        cluster.kubectl("-n", PROBE_NS if name == "probe" else verified_ns, "delete", "rbv", name, "--ignore-not-found")
    cluster.apply(
        verification("probe", {"targets": [{"name": "probe", "image": image}], "timeoutSeconds": 600}), PROBE_NS
    )
    env = {"PYTHONPATH": str(source)} if source else None
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        started = time.monotonic()
        op = stack.enter_context(
            running_operator(cluster, [], workdir, extra=["--all-namespaces"], env=env, wait_ready=False)
        )
        ready_at = None
        deadline = started + VERDICT_TIMEOUT
        while time.monotonic() < deadline:
            if ready_at is None and _http_ok(op.metrics_port, "/readyz"):
                ready_at = time.monotonic() - started
            if _phase(cluster, PROBE_NS, "probe") in ("Succeeded", "Failed"):
                out["first_verdict_seconds"] = round(time.monotonic() - started, 1)
                break
            time.sleep(0.5)
        else:
            out["first_verdict_seconds"] = None
            out["no_verdict_after_seconds"] = VERDICT_TIMEOUT
        while ready_at is None and time.monotonic() < deadline:  # the verdict may come first
            if _http_ok(op.metrics_port, "/readyz"):
                ready_at = time.monotonic() - started
            time.sleep(0.5)
        out["ready_seconds"] = None if ready_at is None else round(ready_at, 1)
        pid = op.process.pid
        out["rss_mib_at_verdict"] = round(proc_status(pid)["VmRSS"] / 1024, 1)
        time.sleep(20)
        out["rss_mib_20s_later"] = round(proc_status(pid)["VmRSS"] / 1024, 1)
        out["cpu_seconds_until_then"] = round(cpu_seconds(pid), 1)
        if out["first_verdict_seconds"] is None:
            return out  # too slow to measure churn meaningfully
        out["churn_unverified_namespace"] = _churn(cluster, api, pid, churn_ns)
        held = {"targets": [{"name": "churn-0000", "image": expected("B")}], "timeoutSeconds": 3600}
        cluster.apply(verification("held", held), verified_ns)
        time.sleep(5)
        out["churn_verified_namespace"] = _churn(cluster, api, pid, verified_ns)
        out["rss_mib_end"] = round(proc_status(pid)["VmRSS"] / 1024, 1)
    return out


def run(kubeconfig: Path, workdir: Path, deployments: int = 1000) -> dict[str, Any]:
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    cluster.install_crd()
    image = expected("A")
    namespaces = max(1, deployments // PER_NAMESPACE)
    t0 = time.monotonic()
    for n in range(namespaces):
        ns = new_namespace(cluster, f"scale-{n:02d}")
        names = [f"app-{i:04d}" for i in range(PER_NAMESPACE)]
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=deployments_manifest(names, image, REPLICAS))
    churn_ns, verified_ns = new_namespace(cluster, "scale-churn"), new_namespace(cluster, "scale-verified")
    for ns in (churn_ns, verified_ns):
        names = [f"churn-{i:04d}" for i in range(CHURN_DEPLOYMENTS)]
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=deployments_manifest(names, image, REPLICAS))
    new_namespace(cluster, PROBE_NS)
    cluster.kubectl("-n", PROBE_NS, "apply", "-f", "-", input=deployments_manifest(["probe"], image, REPLICAS))
    total = (namespaces * PER_NAMESPACE + 2 * CHURN_DEPLOYMENTS + 1) * REPLICAS
    cluster.wait_for(lambda: _ready_pods(api) >= total, timeout=1800, what=f"{total} pods running", interval=10)
    setup_seconds = time.monotonic() - t0
    print(f"bench: scale: {total} pods running after {setup_seconds:.0f}s", file=sys.stderr)

    result: dict[str, Any] = {
        "deployments": namespaces * PER_NAMESPACE + 2 * CHURN_DEPLOYMENTS + 1,
        "pods": total,
        "setup_seconds": round(setup_seconds, 1),
    }
    with tempfile.TemporaryDirectory(prefix="rv-bench-baseline-") as tmp:
        revision = _baseline_revision()
        source = _extract(revision, Path(tmp))
        result["before_revision"] = subprocess.run(
            ["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"bench: scale: before ({result['before_revision']}) ...", file=sys.stderr)
        result["before"] = _variant(
            cluster, api, workdir / "before", source, image=image, verified_ns=verified_ns, churn_ns=churn_ns
        )
    print("bench: scale: after ...", file=sys.stderr)
    result["after"] = _variant(
        cluster, api, workdir / "after", None, image=image, verified_ns=verified_ns, churn_ns=churn_ns
    )
    return result
