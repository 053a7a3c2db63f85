"""Rollbacks in Argo CD's destination clusters (issue 13), with two local clusters: the hub runs real
Argo CD and the operator, the spoke runs the agents app, which Argo CD deploys there through a real
cluster Secret holding a ServiceAccount token of the spoke. The operator finds the spoke in that
Secret and verifies against the spoke's own Deployments and pods.

The tests share one Application per test; the outage test runs last (it stops the spoke's API server).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.agents import VALUES_PATH, GitOpsRepo, expected, helm_deploy, images, verification, wait_verdict
from harness.argocd import ArgoCD
from harness.support import Cluster, Operator, running_operator

from tests.e2e.spoke import Spoke
from tests.e2e.test_chart_install import RELEASE, chart_values, install, service_account_kubeconfig

CONTROL_PLANE = "registry.example/lab/jangar-control-plane"  # the `agents` Deployment's image repository
TIMEOUT = 60  # seconds: a detected verification's deadline


@dataclass
class TwoClusters:
    hub: Cluster
    spoke: Spoke
    argo: ArgoCD
    namespace: str  # in the hub: where verifications live; in the spoke: where the app runs
    app: str
    repo: GitOpsRepo
    tmp: Path

    @property
    def destination(self) -> str:  # the Application's destination cluster: Argo CD's own credentials
        return f"spoke-{self.namespace}"

    @property
    def reader(self) -> str:  # the same spoke, for the operator alone, with the documented reader Role
        return f"spoke-reader-{self.namespace}"

    def settings(self, **extra: Any) -> Path:
        watched = {
            "name": self.app,
            "namespace": self.argo.namespace,
            "verificationNamespace": self.namespace,
            "valuesFrom": {"git": {"path": VALUES_PATH}},
            "timeoutSeconds": TIMEOUT,
        }
        settings = {
            "argocdNamespace": self.argo.namespace,
            "detection": {"applications": [watched]},
            "destinations": {"enabled": True},
            "trust": {
                "destinationClusters": {
                    self.namespace: [self.reader, f"bad-{self.namespace}", f"exec-{self.namespace}", "no-such-cluster"]
                }
            },
            **extra,
        }
        path = self.tmp / f"settings-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    def operator(self, **extra: Any) -> Any:
        return running_operator(
            self.hub, [self.namespace], self.tmp / f"op-{time.monotonic_ns()}", self.settings(**extra)
        )

    def deploy(self, release: str) -> str:
        rev = self.repo.commit_values(images(release), f"release {release}")
        self.argo.sync(self.app, rev)
        return rev

    def create(self, name: str, spec: dict[str, Any]) -> None:
        self.hub.apply(verification(name, spec), self.namespace)

    def expect(self, name: str, release: str, **spec: Any) -> None:
        """A verification that the `agents` Deployment runs `release`'s control-plane image."""
        self.create(name, {"targets": [{"name": "agents", "image": expected(release, CONTROL_PLANE)}], **spec})

    def verdict(self, name: str, timeout: float = TIMEOUT + 30) -> dict[str, Any]:
        return wait_verdict(self.hub, self.namespace, name, timeout)

    def register(self, cluster_name: str, token: str, **options: Any) -> None:
        self.hub.apply(self.spoke.cluster_secret(cluster_name, token, namespace=self.argo.namespace, **options))

    def unregister(self) -> None:
        self.hub.kubectl(
            "-n", self.argo.namespace, "delete", "secret", "-l", "argocd.argoproj.io/secret-type=cluster",
            "--ignore-not-found", check=False,
        )  # fmt: skip


@pytest.fixture
def two(cluster: Cluster, spoke: Spoke, argocd: ArgoCD, namespace: str, tmp_path: Path) -> Iterator[TwoClusters]:
    cluster.install_crd()
    spoke.cluster.create_namespace(namespace)
    scene = TwoClusters(
        cluster,
        spoke,
        argocd,
        namespace,
        f"agents-{namespace.removeprefix('t-')}",
        GitOpsRepo(tmp_path / "gitops"),
        tmp_path,
    )
    scene.repo.seed_chart()
    # What `argocd cluster add` sets up: a cluster-admin ServiceAccount of the spoke, in a cluster Secret.
    scene.register(scene.destination, spoke.token("kube-system", f"argocd-manager-{namespace}", cluster_admin=True))
    scene.register(scene.reader, spoke.token(namespace, "rollback-verifier"), server=spoke.alias_server)
    argocd.create_application(scene.app, scene.repo, namespace, cluster={"name": scene.destination})
    yield scene
    argocd.delete_application(scene.app)
    for name in (scene.destination, scene.reader, f"bad-{namespace}", f"exec-{namespace}"):
        cluster.kubectl(
            "-n", argocd.namespace, "delete", "secret", f"cluster-{name}", "--ignore-not-found", check=False
        )
    spoke.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def digest(release: str) -> str:
    return expected(release).split("@")[1]


def no_traceback(operator: Operator) -> None:
    assert operator.process.poll() is None
    assert "Traceback" not in operator.log(), operator.log()[-3000:]


def test_a_rollback_in_the_spoke_is_verified_against_the_spokes_pods(two: TwoClusters) -> None:
    with two.operator() as operator:
        two.deploy("A")
        two.deploy("B")
        two.argo.rollback(two.app)
        obj = two.verdict(f"{two.app}-rollback-2")
        status = obj["status"]
        assert (status["phase"], status["reason"], status["detectedBy"]) == ("Succeeded", "Verified", "ArgoCDHistory")
        observed = {t["name"]: t["observedImages"] for t in status["targets"]}
        # The spoke's pods' imageIDs (KWOK reports them from the pinned digest).
        assert [image.split("@")[1] for image in observed["agents"]["control-plane"]] == [digest("A")]
        # The Deployments run in the spoke only: the verdict was decided there, not in the hub.
        assert two.spoke.cluster.get("-n", two.namespace, "deployment", "agents")["metadata"]["name"] == "agents"
        assert two.hub.kubectl("-n", two.namespace, "get", "deployment", "agents", check=False).returncode != 0

        # A manual verification of the same Application (its destination by default) expecting what the
        # spoke does not run: ImageMismatch, from the spoke's pods.
        two.expect("expects-b", "B", application={"name": two.app}, timeoutSeconds=10)
        status = two.verdict("expects-b", 40)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ImageMismatch"), status
        assert digest("A") in json.dumps(status["targets"])

        # spec.destination naming the operator's own registration of the spoke (the reader Role only).
        two.expect("by-name", "A", destination={"name": two.reader}, timeoutSeconds=30)
        status = two.verdict("by-name", 60)["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status
        # No verification left in the spoke: its watches are closed, not left to the API server's timeout.
        two.hub.wait_for(lambda: two.spoke.watches() == 0, timeout=30, what="the spoke's watches to be closed")
        no_traceback(operator)


def test_who_may_name_which_cluster_and_clear_reasons_for_bad_credentials(two: TwoClusters) -> None:
    two.register(f"bad-{two.namespace}", "not-a-token", server=two.spoke.alias_server)
    two.register(
        f"exec-{two.namespace}",
        "",
        server=two.spoke.alias_server,
        execProviderConfig={"command": "argocd-k8s-auth", "apiVersion": "client.authentication.k8s.io/v1beta1"},
    )
    with two.operator() as operator:
        # A cluster the settings do not list for this namespace (it exists: the Application's, under another name).
        two.expect("elsewhere", "A", destination={"server": two.spoke.server})
        two.expect("wrong-token", "A", destination={"name": f"bad-{two.namespace}"}, timeoutSeconds=8)
        two.expect("exec", "A", destination={"name": f"exec-{two.namespace}"})
        two.expect("nowhere", "A", destination={"name": "no-such-cluster"})

        status = two.verdict("elsewhere", 30)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
        assert f"trust.destinationClusters.{two.namespace}" in status["message"]

        status = two.verdict("exec", 30)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ClusterUnreachable")
        assert "execProviderConfig" in status["message"] and f"cluster-exec-{two.namespace}" in status["message"]

        status = two.verdict("nowhere", 30)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ClusterUnreachable")
        assert "no Argo CD cluster Secret" in status["message"] and "no-such-cluster" in status["message"]

        status = two.verdict("wrong-token", 40)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ClusterUnreachable"), status
        assert "401" in status["message"] and "refused the credentials" in status["message"]
        assert "unreachable since" in status["message"]
        log = operator.log()
        assert "not-a-token" not in log and "BEGIN CERTIFICATE" not in log  # never a credential in the log
        no_traceback(operator)


def test_destination_clusters_off_refuses_with_the_setting_to_enable(two: TwoClusters) -> None:
    with two.operator(destinations={"enabled": False}):
        two.expect("off", "A", application={"name": two.app})
        status = two.verdict("off", 30)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
        assert "destinations.enabled" in status["message"]


def test_check_reads_the_spoke_with_its_own_context(two: TwoClusters, tmp_path: Path) -> None:
    two.deploy("A")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(images("A")))
    context = yaml.safe_load(two.spoke.cluster.kubeconfig.read_text())["current-context"]
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_verifier", "check", "--kubeconfig", str(two.spoke.cluster.kubeconfig),
         "--context", context, "-n", two.namespace, "--values", str(values), "--timeout", "60", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["phase"] == "Succeeded"


def test_the_spoke_down_fails_at_the_deadline_while_the_hub_verifies(two: TwoClusters, namespace: str) -> None:
    two.deploy("A")
    # Deployments in the hub too (the same namespace name), verified while the spoke is down.
    helm_deploy(two.hub, namespace, images("A"))
    with two.operator() as operator:
        two.expect("spoke-down", "C", destination={"name": two.reader}, timeoutSeconds=30)
        # Its caches synced (it judges the spoke's pods: "not yet"), then the spoke goes away.
        two.hub.wait_for(
            lambda: (
                "agents"
                in json.dumps(
                    (two.hub.get("-n", namespace, "rbv", "spoke-down").get("status") or {}).get("targets") or []
                )
            ),
            timeout=30,
            what="the spoke verification to judge the spoke's Deployment",
        )
        outage = two.spoke.outage(45)
        try:
            two.expect("hub", "A", timeoutSeconds=60)
            hub = two.verdict("hub", 60)["status"]
            assert (hub["phase"], hub["reason"]) == ("Succeeded", "Verified"), hub
            status = two.verdict("spoke-down", 60)["status"]
            assert outage.poll() is None, "the spoke came back before the verdict: the outage proved nothing"
        finally:
            outage.wait(timeout=240)
        assert (status["phase"], status["reason"]) == ("Failed", "ClusterUnreachable"), status
        assert "unreachable since" in status["message"] and two.reader in status["message"]
        assert hub["completedAt"] <= status["completedAt"]
        no_traceback(operator)


def test_the_chart_in_a_hub_verifies_in_the_spoke_with_only_its_own_rbac(
    cluster: Cluster, spoke: Spoke, namespace: str, tmp_path: Path
) -> None:
    """The chart installed with destinations.enabled; the operator runs as the chart's ServiceAccount
    with the settings the chart renders, and reads the cluster Secret in the Argo CD namespace with the
    chart's Role (list) and the spoke with the documented reader Role."""
    argocd_ns = cluster.create_namespace(f"{namespace}-argocd")
    try:
        spoke.cluster.create_namespace(namespace)
        helm_deploy(spoke.cluster, namespace, images("A"))
        spoke.cluster.rollout_status(namespace, "agents")
        values = chart_values(
            namespace, argocd_ns, destinations={"enabled": True}, trust={"destinationClusters": {namespace: ["spoke"]}}
        )
        install(cluster, namespace, values)
        reader = spoke.token(namespace, "rollback-verifier")
        cluster.apply(spoke.cluster_secret("spoke", reader, namespace=argocd_ns, server=spoke.alias_server))
        rendered = cluster.get("-n", namespace, "configmap", f"{RELEASE}-rollback-verifier-settings")
        settings = tmp_path / "settings.yaml"
        settings.write_text(rendered["data"]["settings.yaml"])
        as_operator = Cluster(service_account_kubeconfig(cluster, namespace, tmp_path))
        with running_operator(as_operator, [namespace], tmp_path / "op", settings=settings) as operator:
            spec = {"destination": {"name": "spoke"}, "timeoutSeconds": 60}
            spec["targets"] = [{"name": "agents", "image": expected("A", CONTROL_PLANE)}]
            cluster.apply(verification("in-spoke", spec), namespace)
            status = wait_verdict(cluster, namespace, "in-spoke", 90)["status"]
            assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status
            log = operator.log()
        assert "Forbidden" not in log and "403" not in log, log[-3000:]
        # The chart's identity reads Secrets in the Argo CD namespace only by listing, nowhere else.
        assert as_operator.kubectl("-n", argocd_ns, "get", "secrets", check=False).returncode == 0
        for args in (["-n", argocd_ns, "get", "secret", "cluster-spoke"], ["-n", namespace, "get", "secrets"]):
            proc = as_operator.kubectl(*args, check=False)
            assert proc.returncode != 0 and "Forbidden" in proc.stderr, (args, proc.stderr)
    finally:
        cluster.helm("uninstall", RELEASE, "-n", namespace, check=False)
        cluster.kubectl("delete", "namespace", argocd_ns, "--wait=false", check=False)
        spoke.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
