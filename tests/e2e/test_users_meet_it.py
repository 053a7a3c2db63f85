"""Scenarios users meet in their first week, on the real cluster with the operator running: a log-shipper
sidecar, a stuck release rolled back (the verification created before and after the undo), messages that
name what is missing, `run --kubeconfig/--context`, and the `kubectl rbv` plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from harness.agents import (
    GitOpsRepo,
    expected,
    git_values_spec,
    helm_deploy,
    images,
    merge,
    verification,
    wait_verdict,
)
from harness.support import Cluster, free_port, running_operator

from rollback_verifier.tools import find_tool
from tests.e2e.test_verifier import operator  # noqa: F401 - the fixture: the operator watching the test namespace

APP_IMAGE = expected("A")
LOG_SHIPPER = "registry.example/ops/log-shipper:3.0@sha256:" + "d" * 64


def deployment_manifest(name: str, containers: dict[str, str], replicas: int = 2) -> str:
    labels = {"app.kubernetes.io/name": name}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": c, "image": i} for c, i in containers.items()]},
                },
            },
        }
    )


def test_a_log_shipper_sidecar_is_not_judged(cluster: Cluster, namespace: str, operator: Any) -> None:  # noqa: F811
    cluster.apply(deployment_manifest("web", {"app": APP_IMAGE, "log-shipper": LOG_SHIPPER}), namespace)
    cluster.apply(deployment_manifest("only-sidecars", {"log-shipper": LOG_SHIPPER}, replicas=1), namespace)
    cluster.rollout_status(namespace, "web")
    web = {"targets": [{"name": "web", "image": APP_IMAGE}], "timeoutSeconds": 60}
    cluster.apply(verification("web", web), namespace)
    sidecars_only = {"targets": [{"name": "only-sidecars", "image": APP_IMAGE}], "timeoutSeconds": 4}
    cluster.apply(verification("no-app-container", sidecars_only), namespace)

    status = wait_verdict(cluster, namespace, "web", timeout=60)["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status.get("message")
    assert status["message"] == "1/1 Deployments run the reverted images (digests verified)"
    assert status["targets"][0]["expectedImages"] == {"app": APP_IMAGE}

    status = wait_verdict(cluster, namespace, "no-app-container", timeout=60)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ImageMismatch")
    assert "no container of the pod template runs registry.example/lab/jangar" in status["message"]
    assert f"log-shipper={LOG_SHIPPER}" in status["message"] and "`containers:`" in status["message"]


def stuck_release_b(cluster: Cluster, namespace: str, tmp_path: Path) -> tuple[GitOpsRepo, str]:
    """Release A deployed, then release B, whose pods never get Ready: B's rollout exceeds its deadline."""
    repo = GitOpsRepo(tmp_path / "gitops")
    rev_a = repo.commit_values(images("A"), "release A")
    helm_deploy(cluster, namespace, repo.values_at(rev_a))
    for d in ("agents", "agents-controllers"):
        cluster.rollout_status(namespace, d)
    helm_deploy(cluster, namespace, merge(images("B"), {"neverReady": True, "progressDeadlineSeconds": 2}))

    def exceeded() -> bool:
        for d in ("agents", "agents-controllers"):
            conditions = cluster.get("-n", namespace, "deployment", d).get("status", {}).get("conditions") or []
            if not any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions):
                return False
        return True

    cluster.wait_for(exceeded, timeout=60, what="release B's rollouts to exceed their progress deadline")
    return repo, rev_a


def test_a_stuck_release_rolled_back_after_the_verification_was_created_succeeds(
    cluster: Cluster,
    namespace: str,
    operator: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    repo, rev_a = stuck_release_b(cluster, namespace, tmp_path)
    cluster.apply(verification("to-a", git_values_spec(repo, rev_a, timeoutSeconds=120)), namespace)

    def waiting_for_the_undo() -> dict[str, Any] | None:
        status = cluster.get("-n", namespace, "rbv", "to-a").get("status") or {}
        assert status.get("phase") not in ("Succeeded", "Failed"), status  # B's deadline is not A's verdict
        return status if "waiting for the rollback to replace it" in (status.get("message") or "") else None

    status = cluster.wait_for(waiting_for_the_undo, timeout=60, what="the verification to wait for the undo")
    assert status["phase"] == "Running" and "exceeded its progress deadline" in status["message"]

    cluster.helm("rollback", "agents", "1", "-n", namespace)
    status = wait_verdict(cluster, namespace, "to-a", timeout=90)["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status.get("message")


def test_a_stuck_release_rolled_back_before_the_verification_was_created_succeeds(
    cluster: Cluster,
    namespace: str,
    operator: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    repo, rev_a = stuck_release_b(cluster, namespace, tmp_path)
    cluster.helm("rollback", "agents", "1", "-n", namespace)
    cluster.apply(verification("to-a", git_values_spec(repo, rev_a, timeoutSeconds=120)), namespace)
    status = wait_verdict(cluster, namespace, "to-a", timeout=90)["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status.get("message")


def test_a_missing_application_is_named(cluster: Cluster, namespace: str, operator: Any) -> None:  # noqa: F811
    cluster.apply(deployment_manifest("web", {"app": APP_IMAGE}, replicas=1), namespace)
    spec = {
        "application": {"name": "no-such-app"},
        "targets": [{"name": "web", "image": APP_IMAGE}],
        "timeoutSeconds": 4,
    }
    cluster.apply(verification("app-missing", spec), namespace)
    status = wait_verdict(cluster, namespace, "app-missing", timeout=60)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ApplicationUnhealthy")
    assert "the Application argocd/no-such-app is not found, not Healthy" in status["message"]


def kubeconfig_with_contexts(cluster: Cluster, path: Path) -> Path:
    """The cluster's kubeconfig with its context renamed `real`, and a current context `broken` that points
    at a port nobody listens on: only --kubeconfig AND --context together reach the cluster."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    real = config["contexts"][0]["context"]
    config["clusters"].append({"name": "nowhere", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}})
    config["contexts"] = [
        {"name": "real", "context": real},
        {"name": "broken", "context": {**real, "cluster": "nowhere"}},
    ]
    config["current-context"] = "broken"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_takes_kubeconfig_and_context_and_says_nothing_of_detection_when_it_is_off(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.install_crd()
    kubeconfig = kubeconfig_with_contexts(cluster, tmp_path / "kubeconfig")
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"detection": {"enabled": False}}))
    cluster.apply(deployment_manifest("web", {"app": APP_IMAGE}, replicas=1), namespace)
    extra = ["--kubeconfig", str(kubeconfig), "--context", "real"]
    # The environment's KUBECONFIG names a file without a `real` context: only the flags can work.
    env_cluster = Cluster(tmp_path / "no-such-kubeconfig")
    with running_operator(env_cluster, [namespace], tmp_path, settings=settings, extra=extra) as op:
        cluster.apply(verification("web", {"targets": [{"name": "web", "image": APP_IMAGE}]}), namespace)
        status = wait_verdict(cluster, namespace, "web", timeout=60)["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status.get("message")
        # /readyz answered, so the start-up handler (where the note would be logged) has run.
        assert "does not exist" not in op.log(), op.log()


def kubectl_rbv(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl rbv ...` through the real kubectl, which finds the kubectl-rbv plugin on PATH (installed
    with the project, next to this Python)."""
    scripts = Path(sys.executable).parent
    assert (scripts / "kubectl-rbv").is_file(), f"kubectl-rbv is not installed in {scripts}"
    return subprocess.run(
        [find_tool("kubectl"), "rbv", *args],
        env={**cluster.env, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_kubectl_plugin_lists_describes_and_verifies_again(
    cluster: Cluster,
    namespace: str,
    operator: Any,  # noqa: F811
) -> None:
    cluster.apply(deployment_manifest("web", {"app": APP_IMAGE}, replicas=1), namespace)
    cluster.apply(verification("first", {"targets": [{"name": "web", "image": APP_IMAGE}]}), namespace)
    wait_verdict(cluster, namespace, "first", timeout=60)

    listed = kubectl_rbv(cluster, "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("first "))
    assert row.split()[:5] == ["first", "-", "-", "Succeeded", "Verified"]

    described = kubectl_rbv(cluster, "describe", "first", "-n", namespace)
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert "Phase:        Succeeded (Verified)" in text
    assert any(line.split()[:4] == [f"{namespace}/web", "1/1", "app", APP_IMAGE] for line in text.splitlines())
    assert any(line.split()[:3] == ["Ready", "True", "Verified"] for line in text.splitlines())
    assert any(line.split()[:2] == ["Normal", "Verified"] for line in text.splitlines()), text

    again = kubectl_rbv(cluster, "verify-again", "first", "-n", namespace)
    assert again.returncode == 0, again.stderr
    new_name = again.stdout.split("/", 1)[1].split()[0]
    assert new_name.startswith("first-again-")
    obj = wait_verdict(cluster, namespace, new_name, timeout=60)
    assert obj["spec"] == cluster.get("-n", namespace, "rbv", "first")["spec"]
    assert (obj["status"]["phase"], obj["status"]["detectedBy"]) == ("Succeeded", "Manual")

    missing = kubectl_rbv(cluster, "describe", "nope", "-n", namespace)
    assert missing.returncode == 2 and f"RollbackVerification {namespace}/nope not found" in missing.stderr
