"""Our own chart on the real cluster: install, upgrade and rollback are safe, and the operator works
with exactly the chart's RBAC (namespaced mode, Roles only)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness.agents import GitOpsRepo, expected, git_values_spec, helm_deploy, images, verification, wait_verdict
from harness.support import ROOT, Cluster, running_operator

from rollback_verifier.tools import find_tool

CHART = ROOT / "deploy" / "chart"
RELEASE = "rv"
SERVICE_ACCOUNT = "rv-rollback-verifier"


@pytest.fixture
def argocd_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    name = f"{namespace}-argocd"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def chart_values(namespace: str, argocd_namespace: str, **extra: object) -> Path:
    values = {
        "controller": {"namespaces": [namespace]},
        "argocd": {"namespace": argocd_namespace},
        "detection": {"applications": [{"name": "agents", "verificationNamespace": namespace}]},
        **extra,
    }
    path = Path(f"/tmp/{namespace}-values.yaml")
    path.write_text(yaml.safe_dump(values))
    return path


def install(cluster: Cluster, namespace: str, values: Path, *extra: str, command: str = "install") -> None:
    cluster.helm(command, RELEASE, str(CHART), "-n", namespace, "-f", str(values), *extra)


def test_install_upgrade_and_rollback_keep_the_crd_and_verifications(
    cluster: Cluster, namespace: str, argocd_namespace: str
) -> None:
    values = chart_values(namespace, argocd_namespace)
    install(cluster, namespace, values)
    assert cluster.get("crd", "rollbackverifications.gitops.proompteng.ai")["spec"]["group"] == "gitops.proompteng.ai"
    cluster.apply(verification("audit-record", {"targets": [{"name": "agents", "image": expected("A")}]}), namespace)

    # Upgrade: turn an optional resource on; rollback: it goes away again, with no manual cleanup.
    install(
        cluster, namespace, values, "--set", "networkPolicy.enabled=true", "--set", "logLevel=debug", command="upgrade"
    )
    assert cluster.get("-n", namespace, "networkpolicies")["items"], "the flag adds its NetworkPolicy"
    cluster.helm("rollback", RELEASE, "1", "-n", namespace)
    assert cluster.get("-n", namespace, "networkpolicies")["items"] == []
    deployment = cluster.get("-n", namespace, "deployment", SERVICE_ACCOUNT)
    assert "--log-level=info" in " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    cluster.helm("uninstall", RELEASE, "-n", namespace)
    # Helm never deletes what crds/ installed: the CRD and every audit record survive the uninstall.
    cluster.get("crd", "rollbackverifications.gitops.proompteng.ai")
    assert cluster.get("-n", namespace, "rbv", "audit-record")["metadata"]["name"] == "audit-record"
    assert cluster.get("-n", namespace, "roles")["items"] == []


def service_account_kubeconfig(cluster: Cluster, namespace: str, tmp: Path) -> Path:
    token = cluster.kubectl("-n", namespace, "create", "token", SERVICE_ACCOUNT, "--duration=1h").stdout.strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    kube_cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": kube_cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": SERVICE_ACCOUNT, "namespace": namespace}}],
        "current-context": "sa",
    }
    path = tmp / "sa.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def test_the_operator_verifies_a_rollback_with_only_the_charts_namespaced_rbac(
    cluster: Cluster, namespace: str, argocd_namespace: str, tmp_path: Path
) -> None:
    install(cluster, namespace, chart_values(namespace, argocd_namespace))
    rendered = cluster.helm("get", "manifest", RELEASE, "-n", namespace).stdout
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds and "Role" in kinds

    as_operator = Cluster(service_account_kubeconfig(cluster, namespace, tmp_path))
    repo = GitOpsRepo(tmp_path / "gitops")
    rev_a = repo.commit_values(images("A"), "release A")
    helm_deploy(cluster, namespace, repo.values_at(rev_a))
    helm_deploy(cluster, namespace, images("B"))
    cluster.helm("rollback", "agents", "1", "-n", namespace)

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"argocdNamespace": argocd_namespace, "detection": {"enabled": False}}))
    with running_operator(as_operator, [namespace], tmp_path, settings=settings) as operator:
        cluster.apply(verification("as-sa", git_values_spec(repo, rev_a, timeoutSeconds=90)), namespace)
        status = wait_verdict(cluster, namespace, "as-sa", timeout=90)["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status
        log = operator.log()
    assert "Forbidden" not in log and "403" not in log, log[-3000:]

    # The same identity is refused what it was not granted.
    for args in (
        ["-n", namespace, "get", "secrets"],
        ["-n", "default", "get", "deployments"],
        ["-n", argocd_namespace, "get", "pods"],
        ["-n", namespace, "delete", "deployment", "agents", "--dry-run=server"],
        ["get", "nodes"],
    ):
        proc = as_operator.kubectl(*args, check=False)
        assert proc.returncode != 0 and "Forbidden" in proc.stderr, (args, proc.stderr)


def test_promtool_accepts_the_live_metrics(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    cluster.install_crd()
    with running_operator(cluster, [namespace], tmp_path) as operator:
        cluster.apply(
            verification("m", {"targets": [{"name": "x", "image": expected("A")}], "timeoutSeconds": 1}), namespace
        )
        wait_verdict(cluster, namespace, "m", timeout=30)
        text = operator.metrics()
    proc = subprocess.run(
        [find_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'rollback_verification_completed_total{application="",phase="Failed",reason="TargetNotFound"} 1.0' in text
