"""`make demo`: a real rollback on the local cluster, verified by the operator.

Brings up the local cluster, installs the CRD and the fixture agents app, deploys images A, then B,
rolls back to A with helm, runs the operator, applies a RollbackVerification and shows the verdict;
then a second rollback that leaves the controllers on B, to show a Failed verdict.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.agents import (  # noqa: E402 - the repo root must be importable first
    GitOpsRepo,
    git_values_spec,
    helm_deploy,
    images,
    merge,
    verification,
    wait_verdict,
)
from tests.e2e.support import Cluster, running_operator  # noqa: E402

NAMESPACE = "agents"
BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)


def step(text: str) -> None:
    print(f"{BOLD}▸{RESET} {text}", flush=True)


def show(text: str) -> None:
    for line in text.rstrip().splitlines():
        print(f"    {line}")


def cluster_up() -> Cluster:
    env = {**os.environ, "RV_CLUSTER_NAME": "rollback-verifier"}
    proc = subprocess.run(
        [str(ROOT / "tests/e2e/cluster/cluster.sh"), "up"], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"the local cluster did not start:\n{proc.stderr}")
    kubeconfig = re.search(r"KUBECONFIG=(\S+)", proc.stdout)
    if kubeconfig is None:
        sys.exit(f"cluster.sh printed no KUBECONFIG:\n{proc.stdout}")
    return Cluster(Path(kubeconfig.group(1)))


def targets_table(status: dict) -> str:
    rows = [("DEPLOYMENT", "READY", "EXPECTED", "RUNNING (imageID)", "DIGESTS")]
    for t in status.get("targets", []):
        expected = ", ".join(sorted(set(t.get("expectedImages", {}).values())))
        running = ", ".join(sorted({i for ids in t.get("observedImages", {}).values() for i in ids})) or "-"
        rows.append(
            (
                t["name"],
                f"{t.get('availableReplicas', 0)}/{t.get('replicas', 0)}",
                _short(expected),
                _short(running),
                "verified" if t.get("digestsVerified") else "NOT verified",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _short(image: str) -> str:
    """registry.example/lab/jangar:aaaaaaaa@sha256:aaaa… -> jangar:aaaaaaaa@sha256:aaaaaaaaaaaa…"""
    return re.sub(r"[^,\s]*/", "", re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]+", r"\1…", image))


def metric_lines(text: str) -> str:
    keep = (
        "rollback_verification_completed_total",
        "rollback_verification_in_progress",
        "rollback_verification_duration_seconds_count",
    )
    return "\n".join(line for line in text.splitlines() if line.startswith(keep))


def verdict_line(status: dict) -> str:
    colour = GREEN if status["phase"] == "Succeeded" else RED
    return f"{colour}{status['phase']}/{status['reason']}{RESET}: {status['message']}"


def main() -> None:
    started = time.monotonic()
    step("starting the local cluster (etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes)")
    cluster = cluster_up()
    step("installing the RollbackVerification CRD")
    cluster.install_crd()
    cluster.create_namespace(NAMESPACE, fresh=True)

    with tempfile.TemporaryDirectory(prefix="rv-demo-") as tmp_dir:
        tmp = Path(tmp_dir)
        repo = GitOpsRepo(tmp / "gitops")
        rev_a = repo.commit_values(images("A"), "agents: release A")
        rev_b = repo.commit_values(images("B"), "agents: release B")
        for label, rev in (("A", rev_a), ("B", rev_b)):
            step(f"deploying images {label} (gitops revision {rev[:8]}) with helm")
            helm_deploy(cluster, NAMESPACE, repo.values_at(rev))
            for d in ("agents", "agents-controllers"):
                cluster.rollout_status(NAMESPACE, d)
        step("rolling back to A: helm rollback agents 1")
        cluster.helm("rollback", "agents", "1", "-n", NAMESPACE)

        step("starting the operator (rollback-verifier run --namespace agents)")
        with running_operator(cluster, [NAMESPACE], tmp) as operator:
            step("applying RollbackVerification agents-rollback-1 (revision A, values from git)")
            spec = git_values_spec(repo, rev_a, fromRevision=rev_b, timeoutSeconds=120)
            cluster.apply(verification("agents-rollback-1", spec), NAMESPACE)
            status = wait_verdict(cluster, NAMESPACE, "agents-rollback-1", 120)["status"]
            step(verdict_line(status))
            show(cluster.kubectl("-n", NAMESPACE, "get", "rbv").stdout)
            show(targets_table(status))

            step("a second rollback that leaves an override behind: controllers.image stays on B")
            override = {"controllers": {"image": images("B")["image"]}}
            helm_deploy(cluster, NAMESPACE, merge(images("A"), override))
            spec = git_values_spec(repo, rev_a, fromRevision=rev_b, timeoutSeconds=10)
            cluster.apply(verification("agents-rollback-2", spec), NAMESPACE)
            print(
                f"    {DIM}(waiting up to its 10 s deadline for the controllers to come back to A){RESET}", flush=True
            )
            status = wait_verdict(cluster, NAMESPACE, "agents-rollback-2", 60)["status"]
            step(verdict_line(status))
            show(cluster.kubectl("-n", NAMESPACE, "get", "rbv").stdout)
            show(targets_table(status))
            step(f"the operator's metrics (:{operator.metrics_port}/metrics)")
            show(metric_lines(operator.metrics()))

    step(
        f"done in {time.monotonic() - started:.0f}s. The cluster keeps running: export KUBECONFIG={cluster.kubeconfig}"
    )
    print("    stop it with: make cluster-down")


if __name__ == "__main__":
    main()
