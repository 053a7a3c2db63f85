"""Benchmark 5: the operator cluster-wide on a cluster of many Deployments and KWOK pods, one run measuring
each of its designs of the Deployment/Pod caches (VARIANTS) on the same cluster: kopf's indexes, informers
per verified namespace, informers per target Deployment with coalesced nudges.

An earlier design is the source of the commit just before the change that replaced it (extracted with
`git archive`, imported first through PYTHONPATH); the last one is this checkout. Each is started
`--all-namespaces` with one verification waiting in a small probe namespace (explicit image, the probe
Deployment already rolled out), and measured:

- first verdict: from the process start to the probe's verdict seen by this bench (and /readyz);
- RSS (VmRSS) at that verdict and 20 s later;
- CPU per event: the operator's CPU seconds over a churn window (`kubectl rollout restart` of the
  CHURN_DEPLOYMENTS Deployments of one namespace) divided by the Pod and Deployment events of that
  namespace (counted by the bench's own watch), (a) in a namespace nothing verifies, (b) in a namespace
  where one verification of one of those Deployments is Running, (c) there again with one verification
  whose targets are all of them (every event is one a verification needs), beside the floor of (c):
  bench.receive_floor's CPU over the same window, receiving and parsing those events and nothing else.

The populated cluster is reused when kept (`populate` is idempotent). Figures for 10,000 pods are a
projection, not a measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path
from typing import Any

from harness.agents import expected, verification
from harness.support import ROOT, Cluster, running_operator, stop_process

from bench.common import Recorder, bench_api, cpu_seconds, deployments_manifest, proc_status

PROBE_NS = "scale-probe"
CHURN_NS, VERIFIED_NS = "scale-churn", "scale-verified"
REPLICAS = 3
PER_NAMESPACE = 100
CHURN_DEPLOYMENTS = 30
VERDICT_TIMEOUT = 300


def _before(pattern: str, path: str) -> str:
    """The commit before the newest one whose change of `path` added or removed `pattern`."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%H", "-S", pattern, "--", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{out}^"


# The operators measured, oldest first: (key, what, the revision to extract or None for this checkout).
# "kopf-indexes": before the informers (kopf's @kopf.index on every Pod and Deployment of the cluster);
# "namespace-informers": informers per verified namespace, every pod of it ingested, one nudge per event;
# "this": per-target informers (the API server selects the target's pods), nudges coalesced.
VARIANTS: dict[str, tuple[str, Callable[[], str] | None]] = {
    "kopf-indexes": (
        "kopf indexes on every Pod and Deployment",
        lambda: _before("@kopf.index", "operator/rollback_verifier/handlers.py"),
    ),
    "namespace-informers": (
        "informers per verified namespace",
        lambda: _before(
            "def acquire(self, namespace: str) -> None", "operator/rollback_verifier/controller/target_caches.py"
        ),
    ),
    "this": ("informers per target, nudges coalesced", None),
}


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


def _churn(cluster: Cluster, api: Any, pid: int, ns: str, *, floor: bool = False) -> dict[str, Any]:
    """Restart the Deployments of `ns`; the operator's CPU over the window per event the namespace saw.
    With `floor`, also that of bench.receive_floor over the same window: receiving and parsing each event
    and nothing else."""
    rec = Recorder(api, ns).start()
    receiver = _receive_floor(cluster, ns) if floor else None
    try:
        mark = rec.mark()
        floor0 = cpu_seconds(receiver.pid) if receiver else 0.0
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        cluster.kubectl("-n", ns, "rollout", "restart", "deployment")
        for i in range(CHURN_DEPLOYMENTS):
            cluster.kubectl("-n", ns, "rollout", "status", f"deployment/churn-{i:04d}", "--timeout=180s")
        time.sleep(3)  # the last deletions' events
        cpu, seconds = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        floor_cpu = cpu_seconds(receiver.pid) - floor0 if receiver else None
        events = [e for e in rec.snapshot()[mark:] if e.kind in ("pod", "deployment")]
    finally:
        rec.stop()
        if receiver is not None:
            stop_process(receiver)
    out = {
        "events": len(events),
        "window_seconds": round(seconds, 1),
        "operator_cpu_seconds": round(cpu, 3),
        "cpu_ms_per_event": round(1000 * cpu / max(len(events), 1), 3),
    }
    if floor_cpu is not None:
        out["receive_floor_cpu_ms_per_event"] = round(1000 * floor_cpu / max(len(events), 1), 3)
    return out


def _receive_floor(cluster: Cluster, ns: str) -> subprocess.Popen[str]:
    """bench.receive_floor on `ns`, once it has listed it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receive_floor", str(cluster.kubeconfig), ns],
        cwd=ROOT,
        env=cluster.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "synced":
        stop_process(proc)
        raise RuntimeError(f"bench.receive_floor did not sync on {ns}: {line or 'it exited'}")
    return proc


def _variant(
    cluster: Cluster, api: Any, workdir: Path, source: Path | None, *, image: str, verified_ns: str, churn_ns: str
) -> dict[str, Any]:
    # Its pods Running is not enough: right after populate the Deployment controller may still be working
    # through its backlog, and the probe's status says it rolled out only once it has updated it.
    cluster.kubectl("-n", PROBE_NS, "rollout", "status", "deployment/probe", f"--timeout={VERDICT_TIMEOUT}s")
    for name in ("probe", "held", "held-all"):
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
                # CPU is less inflated than wall time by what else runs on the machine.
                out["cpu_seconds_at_verdict"] = round(cpu_seconds(op.process.pid), 2)
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
        # Every Deployment of the namespace a target: each event is one a verification needs.
        every = [{"name": f"churn-{i:04d}", "image": expected("B")} for i in range(CHURN_DEPLOYMENTS)]
        cluster.kubectl("-n", verified_ns, "delete", "rbv", "held")
        cluster.apply(verification("held-all", {"targets": every, "timeoutSeconds": 3600}), verified_ns)
        time.sleep(5)
        out["churn_every_deployment_a_target"] = _churn(cluster, api, pid, verified_ns, floor=True)
        out["rss_mib_end"] = round(proc_status(pid)["VmRSS"] / 1024, 1)
    return out


def _namespace(cluster: Cluster, name: str) -> str:
    """The namespace, created when missing: a cluster populated by an earlier run is reused as it is."""
    if cluster.kubectl("get", "namespace", name, check=False).returncode != 0:
        cluster.create_namespace(name)
    return name


def populate(cluster: Cluster, api: Any, deployments: int) -> dict[str, Any]:
    """The cluster of the bench (idempotent: `kubectl apply` of the same objects, so a second run on a kept
    cluster only waits for the pods): `deployments` Deployments of REPLICAS pods in namespaces of
    PER_NAMESPACE, two churn namespaces and the probe's."""
    cluster.install_crd()
    image = expected("A")
    namespaces = max(1, deployments // PER_NAMESPACE)
    t0 = time.monotonic()
    for n in range(namespaces):
        ns = _namespace(cluster, f"scale-{n:02d}")
        names = [f"app-{i:04d}" for i in range(PER_NAMESPACE)]
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=deployments_manifest(names, image, REPLICAS))
    for ns in (CHURN_NS, VERIFIED_NS):
        _namespace(cluster, ns)
        names = [f"churn-{i:04d}" for i in range(CHURN_DEPLOYMENTS)]
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=deployments_manifest(names, image, REPLICAS))
    _namespace(cluster, PROBE_NS)
    cluster.kubectl("-n", PROBE_NS, "apply", "-f", "-", input=deployments_manifest(["probe"], image, REPLICAS))
    total = (namespaces * PER_NAMESPACE + 2 * CHURN_DEPLOYMENTS + 1) * REPLICAS
    cluster.wait_for(lambda: _ready_pods(api) >= total, timeout=3600, what=f"{total} pods running", interval=10)
    setup_seconds = time.monotonic() - t0
    print(f"bench: scale: {total} pods running after {setup_seconds:.0f}s", file=sys.stderr)
    return {
        "deployments": namespaces * PER_NAMESPACE + 2 * CHURN_DEPLOYMENTS + 1,
        "pods": total,
        "setup_seconds": round(setup_seconds, 1),
    }


def run(
    kubeconfig: Path, workdir: Path, deployments: int = 1000, variants: tuple[str, ...] = tuple(VARIANTS)
) -> dict[str, Any]:
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    result = populate(cluster, api, deployments)
    result["variants"] = {}
    image = expected("A")
    for key in variants:
        what, revision_of = VARIANTS[key]
        with tempfile.TemporaryDirectory(prefix=f"rv-bench-{key}-") as tmp:
            source, revision = None, "HEAD"
            if revision_of is not None:
                revision = revision_of()
                source = _extract(revision, Path(tmp))
            short = subprocess.run(
                ["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
            print(f"bench: scale: {key} ({short}) ...", file=sys.stderr)
            load_before = os.getloadavg()[0]
            out = _variant(cluster, api, workdir / key, source, image=image, verified_ns=VERIFIED_NS, churn_ns=CHURN_NS)
            out.update(what=what, revision=short, load_average=[round(load_before, 1), round(os.getloadavg()[0], 1)])
            result["variants"][key] = out
    return result
