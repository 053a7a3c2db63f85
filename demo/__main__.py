"""`make demo` (`python -m demo`): real Argo CD rolls the agents app back, and the operator notices by itself.

Brings up the local cluster and real Argo CD (repo-server, application controller, API server and
redis as host processes), with a local GitOps repository that Argo CD reads. Argo CD deploys release A,
then B; `argocd app rollback` goes back to A; the operator, watching the Application, creates a
RollbackVerification and verifies it (Succeeded). Then release C, with the controllers pinned to C by an
override in the Application (an SRE's hotfix); a `git revert` of C goes back to B in git, but the
controllers stay on C: noticed, Failed with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from harness.agents import VALUES_PATH, GitOpsRepo, images, wait_verdict
from harness.argocd import ArgoCD, ArgoCDError
from harness.support import ROOT, Cluster, running_operator

NAMESPACE = "agents"
APP = "agents"
DEADLINE = 15  # seconds a verification waits for the rollout to match
BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)


def step(text: str) -> None:
    print(f"{BOLD}▸{RESET} {text}", flush=True)


def show(text: str) -> None:
    for line in text.rstrip().splitlines():
        print(f"    {line}")


# The cluster's name: RV_CLUSTER_NAME, as for `make cluster-up`, so that a demo can run beside another cluster.
CLUSTER_NAME = os.environ.get("RV_CLUSTER_NAME") or "rollback-verifier"


def cluster_up() -> Cluster:
    env = {**os.environ, "RV_CLUSTER_NAME": CLUSTER_NAME}
    proc = subprocess.run(
        [str(ROOT / "tests/e2e/cluster/cluster.sh"), "up"], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"the local cluster did not start:\n{proc.stderr}")
    kubeconfig = re.search(r"KUBECONFIG=(\S+)", proc.stdout)
    if kubeconfig is None:
        sys.exit(f"cluster.sh printed no KUBECONFIG:\n{proc.stdout}")
    return Cluster(Path(kubeconfig.group(1)))


def targets_table(status: dict[str, Any]) -> str:
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
        "rollback_verification_detected_total",
        "rollback_verification_completed_total",
        "rollback_verification_in_progress",
        "rollback_verification_duration_seconds_count",
    )
    return "\n".join(line for line in text.splitlines() if line.startswith(keep))


def verdict_line(status: dict[str, Any]) -> str:
    colour = GREEN if status["phase"] == "Succeeded" else RED
    return f"{colour}{status['phase']}/{status['reason']}{RESET}: {status['message']}"


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rollback-verifier"
    return Path(os.environ.get("RV_CACHE_DIR") or default)


def settings_file(tmp: Path, argocd: ArgoCD) -> Path:
    path = tmp / "settings.yaml"
    app = {
        "name": APP,
        "namespace": argocd.namespace,
        "verificationNamespace": NAMESPACE,
        "valuesFrom": {"git": {"path": VALUES_PATH}},
        "timeoutSeconds": DEADLINE,
    }
    path.write_text(yaml.safe_dump({"argocdNamespace": argocd.namespace, "detection": {"applications": [app]}}))
    return path


def history(argocd: ArgoCD) -> str:
    return argocd.cli("app", "history", APP).stdout


def show_verdict(cluster: Cluster, name: str) -> dict[str, Any]:
    status: dict[str, Any] = wait_verdict(cluster, NAMESPACE, name, DEADLINE + 60)["status"]
    step(f"{name} ({status['detectedBy']}): {verdict_line(status)}")
    show(cluster.kubectl("-n", NAMESPACE, "get", "rbv").stdout)
    show(targets_table(status))
    return status


def main() -> None:
    started = time.monotonic()
    step("starting the local cluster (etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes)")
    cluster = cluster_up()
    cluster.install_crd()
    cluster.create_namespace(NAMESPACE, fresh=True)
    home = cache_root() / f"argocd-demo-{CLUSTER_NAME}"
    shutil.rmtree(home, ignore_errors=True)
    try:
        argocd = ArgoCD(cluster, home)
        step(f"starting Argo CD {argocd_version(argocd)}: redis, repo-server, application-controller, server")
        argocd.install()
        argocd.start()
    except ArgoCDError as exc:
        sys.exit(f"Argo CD did not start: {exc}")
    try:
        with tempfile.TemporaryDirectory(prefix="rv-demo-") as tmp_dir:
            run(cluster, argocd, Path(tmp_dir))
    finally:
        argocd.stop()
    step(
        f"done in {time.monotonic() - started:.0f}s. Argo CD is stopped (its logs: {argocd.logs}); the cluster "
        f"keeps running: export KUBECONFIG={cluster.kubeconfig}"
    )
    print(f"    stop it with: RV_CLUSTER_NAME={CLUSTER_NAME} make cluster-down")


def argocd_version(argocd: ArgoCD) -> str:
    return argocd.cli("version", "--client", "--short").stdout.strip().removeprefix("argocd: ")


def run(cluster: Cluster, argocd: ArgoCD, tmp: Path) -> None:
    argocd.delete_application(APP)  # a previous demo's
    cluster.wait_for(
        lambda: cluster.kubectl("-n", argocd.namespace, "get", "applications.argoproj.io", APP, check=False).returncode,
        30,
        "the previous demo's Application to be gone",
    )
    repo = GitOpsRepo(tmp / "gitops")
    repo.seed_chart()
    argocd.create_application(APP, repo, NAMESPACE)
    step(f"Application {argocd.namespace}/{APP}: chart and values from the GitOps repository {repo.url}")

    with running_operator(cluster, [NAMESPACE], tmp / "operator", settings=settings_file(tmp, argocd)) as operator:
        step("the operator runs (rollback-verifier run): it watches the Application's history")
        revs = {}
        for release in ("A", "B"):
            revs[release] = repo.commit_values(images(release), f"agents: release {release}")
            step(f"git commit: release {release} ({revs[release][:8]}); argocd app sync {APP}")
            argocd.sync(APP, revs[release])
        step(f"argocd app rollback {APP}   (back to release A)")
        argocd.rollback(APP)
        show(history(argocd))
        rollback_id = argocd.history(APP)[-1]["id"]
        show_verdict(cluster, f"{APP}-rollback-{rollback_id}")

        revs["C"] = repo.commit_values(images("C"), "agents: release C")
        step(f"git commit: release C ({revs['C'][:8]}); argocd app sync {APP}")
        argocd.sync(APP, revs["C"])
        pin = images("C")["image"]
        step("an SRE pins the controllers to C in the Application (argocd app set --helm-set controllers.image...)")
        sets = [f"controllers.image.{key}={pin[key]}" for key in ("repository", "tag", "digest")]
        argocd.cli("app", "set", APP, *[arg for s in sets for arg in ("--helm-set", s)])
        argocd.sync(APP, revs["C"])
        revert = repo.revert(revs["C"])
        step(f"git revert {revs['C'][:8]} ({revert[:8]}: back to B in git); argocd app sync {APP}")
        argocd.sync(APP, revert)
        show(history(argocd))
        print(f"    {DIM}(the controllers stay on C: waiting up to the {DEADLINE} s deadline){RESET}", flush=True)
        show_verdict(cluster, f"{APP}-rollback-{argocd.history(APP)[-1]['id']}")
        step(f"the operator's metrics (:{operator.metrics_port}/metrics)")
        show(metric_lines(operator.metrics()))


if __name__ == "__main__":
    main()
