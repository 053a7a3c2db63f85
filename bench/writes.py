"""Benchmark 6: status writes per verification under load.

N RollbackVerifications of one real rollback (the agents chart, B back to A, values from git) are
created at once, while B still runs; then `helm rollback` starts the rollouts and all N are watched
to their verdicts. The kube-apiserver audit log gives the status patches the operator sent for each
(`patch rollbackverifications/status`, conflicts included), from the creation to the last verdict.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness.agents import GitOpsRepo, deploy_a_then_b, git_values_spec, verification
from harness.support import Cluster, running_operator

from bench.common import FINAL, OPERATOR_USER_AGENTS, AuditLog, bench_api, new_namespace, summary, sync_audit

NAMESPACE = "bench-writes"


def run(kubeconfig: Path, audit_log: Path | None, workdir: Path, count: int = 50) -> dict[str, Any]:
    if audit_log is None:
        return {"skipped": "needs the audit log (--audit-log)"}
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    audit = AuditLog(audit_log)
    cluster.install_crd()
    ns = new_namespace(cluster, NAMESPACE)
    repo = GitOpsRepo(workdir / "gitops")
    rev_a, rev_b = deploy_a_then_b(cluster, ns, repo)
    names = [f"writes-{i:03d}" for i in range(count)]
    with running_operator(cluster, [ns], workdir / "operator"):
        time.sleep(3)
        start = time.time()
        spec = git_values_spec(repo, rev_a, fromRevision=rev_b, timeoutSeconds=300)
        cluster.kubectl("-n", ns, "apply", "-f", "-", input="\n---\n".join(verification(n, spec) for n in names))
        cluster.helm("rollback", "agents", "1", "-n", ns)

        def phases() -> dict[str, str] | None:
            items = cluster.get("-n", ns, "rbv")["items"]
            got = {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}
            return got if len(got) == count and all(p in FINAL for p in got.values()) else None

        final = cluster.wait_for(phases, timeout=300, what=f"{count} verdicts", interval=1)
        end = time.time() + 1
        time.sleep(1)
        sync_audit(audit, api)
    patches = [
        r
        for r in audit.requests(OPERATOR_USER_AGENTS, start, end)
        if r.verb == "patch" and r.resource == "rollbackverifications/status" and r.namespace == ns
    ]
    per_name = Counter(r.name for r in patches)
    conflicts = sum(1 for r in patches if r.code == 409)
    return {
        "verifications": count,
        "phases": dict(Counter(final.values())),
        "status_patches": len(patches),
        "conflicts": conflicts,
        "per_verification": summary([float(per_name.get(n, 0)) for n in names]),
        "mean_per_verification": round(len(patches) / count, 2),
    }
