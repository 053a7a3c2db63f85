"""Benchmark 2: the operator's memory with many verifications in progress at once.

Two scenarios, each with an operator of its own (a host process, `rollback-verifier run
--namespace <ns>`), so that one's caches do not count in the other's figures:

- `agents`: the fixture agents chart deployed with `neverReady: true` (its pods run but never get
  Ready), and N RollbackVerifications of it reading their values from git, all at the same
  revision: N jobs over the same 2 Deployments and 4 Pods.
- `deployments`: N small Deployments (2 replicas, never Ready) and one RollbackVerification per
  Deployment with an explicit image: N jobs over N Deployments and 2N Pods.

timeoutSeconds is long (1800 s), so every verification stays Running. The operator's VmRSS and
VmHWM (/proc/<pid>/status) are read once it is idle (started, nothing to verify), then once all N
verifications have written their progress status (Running, "waiting for the rollouts"), and again
after 10 s more; the operator's CPU seconds too. git runs as child processes: their memory is not in
these figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.agents import GitOpsRepo, expected, git_values_spec, helm_deploy, images, merge, verification
from harness.support import Cluster, Operator, running_operator

from bench.common import (
    OPERATOR_USER_AGENTS,
    AuditLog,
    bench_api,
    breakdown,
    cpu_seconds,
    deployments_manifest,
    new_namespace,
    proc_status,
    sync_audit,
)

LONG_TIMEOUT = 1800


def _sample(op: Operator) -> dict[str, Any]:
    pid = op.process.pid
    return {**proc_status(pid), "cpu_seconds": round(cpu_seconds(pid), 2), "at": time.time()}


def _wait_pods(cluster: Cluster, ns: str, count: int) -> None:
    def running() -> bool:
        pods = cluster.get("-n", ns, "pods")["items"]
        return sum((p.get("status") or {}).get("phase") == "Running" for p in pods) >= count

    cluster.wait_for(running, timeout=120, what=f"{count} pods running in {ns}", interval=1)


def _all_waiting(cluster: Cluster, ns: str, count: int) -> bool:
    items = cluster.get("-n", ns, "rbv")["items"]
    waiting = [i for i in items if "waiting" in str((i.get("status") or {}).get("message", ""))]
    return len(waiting) >= count


def _scenario(
    *,
    cluster: Cluster,
    audit: AuditLog | None,
    api: Any,
    workdir: Path,
    ns: str,
    count: int,
    setup: Any,
) -> dict[str, Any]:
    manifests = setup(ns)
    with running_operator(cluster, [ns], workdir / ns) as op:
        time.sleep(5)  # let the start-up work (lists, index, first watch events) settle
        idle = _sample(op)
        created = time.time()
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=manifests)
        cluster.wait_for(lambda: _all_waiting(cluster, ns, count), timeout=180, what=f"{count} verifications waiting")
        all_running_after = time.time() - created
        running = _sample(op)
        time.sleep(10)
        running_later = _sample(op)
        phases: dict[str, int] = {}
        for i in cluster.get("-n", ns, "rbv")["items"]:
            phase = (i.get("status") or {}).get("phase", "none")
            phases[phase] = phases.get(phase, 0) + 1
        result: dict[str, Any] = {
            "verifications": count,
            "pods": len(cluster.get("-n", ns, "pods")["items"]),
            "deployments": len(cluster.get("-n", ns, "deployments")["items"]),
            "phases": phases,
            "seconds_until_all_running": round(all_running_after, 2),
            "idle": idle,
            "all_running": running,
            "all_running_plus_10s": running_later,
        }
        if audit is not None:
            sync_audit(audit, api)
            reqs = audit.requests(OPERATOR_USER_AGENTS, created, running["at"])
            result["operator_requests_until_all_running"] = {"total": len(reqs), "breakdown": breakdown(reqs)}
            quiet = audit.requests(OPERATOR_USER_AGENTS, running["at"], running_later["at"])
            result["operator_requests_during_the_next_10s"] = {"total": len(quiet), "breakdown": breakdown(quiet)}
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return result


def run(kubeconfig: Path, audit_log: Path | None, workdir: Path, count: int = 50) -> dict[str, Any]:
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    audit = AuditLog(audit_log) if audit_log else None
    cluster.install_crd()

    repo = GitOpsRepo(workdir / "gitops")
    rev_a = repo.commit_values(images("A"), "release A")

    def agents(ns: str) -> str:
        new_namespace(cluster, ns)
        helm_deploy(cluster, ns, merge(repo.values_at(rev_a), {"neverReady": True}))
        _wait_pods(cluster, ns, 4)
        spec = git_values_spec(repo, rev_a, timeoutSeconds=LONG_TIMEOUT)
        return "\n---\n".join(verification(f"stuck-{i:03d}", spec) for i in range(count))

    def deployments(ns: str) -> str:
        new_namespace(cluster, ns)
        image = expected("A")
        cluster.kubectl(
            "-n",
            ns,
            "apply",
            "-f",
            "-",
            input=deployments_manifest(
                (f"app-{i:03d}" for i in range(count)), image, 2, {"rv-test-never-ready": "true"}
            ),
        )
        _wait_pods(cluster, ns, 2 * count)
        return "\n---\n".join(
            verification(
                f"stuck-{i:03d}",
                {"targets": [{"name": f"app-{i:03d}", "image": image}], "timeoutSeconds": LONG_TIMEOUT},
            )
            for i in range(count)
        )

    return {
        "agents": _scenario(
            cluster=cluster, audit=audit, api=api, workdir=workdir, ns="bench-memory-agents", count=count, setup=agents
        ),
        "deployments": _scenario(
            cluster=cluster,
            audit=audit,
            api=api,
            workdir=workdir,
            ns="bench-memory-deployments",
            count=count,
            setup=deployments,
        ),
    }
