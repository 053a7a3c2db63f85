"""Faults a verifier meets in production, on the real cluster: connections to the API server that
freeze silently, and git remotes that accept connections and never answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.agents import (
    VALUES_PATH,
    GitOpsRepo,
    deploy_a_then_b,
    expected,
    git_values_spec,
    verification,
    wait_verdict,
)
from harness.faults import FreezingProxy, HangingRemote, api_server_address
from harness.support import Cluster, running_operator


@pytest.fixture
def deployed_a_then_b(cluster: Cluster, namespace: str, tmp_path: Path) -> tuple[GitOpsRepo, str, str]:
    cluster.install_crd()
    repo = GitOpsRepo(tmp_path / "gitops")
    rev_a, rev_b = deploy_a_then_b(cluster, namespace, repo)
    return repo, rev_a, rev_b


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[FreezingProxy]:
    p = FreezingProxy(api_server_address(cluster.kubeconfig))
    yield p
    p.close()


def status_of(cluster: Cluster, namespace: str, name: str) -> dict:
    return dict(cluster.get("-n", namespace, "rbv", name).get("status") or {})


def test_watches_frozen_during_a_rollback_never_yield_a_false_verdict(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    proxy: FreezingProxy,
    deployed_a_then_b: tuple[GitOpsRepo, str, str],
) -> None:
    """The operator's watches freeze (no RST) while B still runs; the rollback to A happens unseen. At the
    deadline its caches still show B (a Failed ImageMismatch, were they trusted): the fresh read from
    the API server shows A rolled out, so the verdict is the truth, Succeeded, on pods covering all
    availableReplicas."""
    repo, rev_a, rev_b = deployed_a_then_b
    through_proxy = Cluster(proxy.kubeconfig(cluster.kubeconfig, tmp_path / "proxied.kubeconfig"))
    with running_operator(through_proxy, [namespace], tmp_path) as op:
        spec = git_values_spec(repo, rev_a, fromRevision=rev_b, timeoutSeconds=20, digestPolicy="Strict")
        cluster.apply(verification("frozen", spec), namespace)
        cluster.wait_for(
            lambda: "waiting" in (status_of(cluster, namespace, "frozen").get("message") or ""),
            timeout=60,
            what="the verification to wait for the rollout of B to A",
        )
        # Its four watches (a Deployment and its pods, per target) open, so that the freeze holds them all.
        cluster.wait_for(lambda: cluster.namespaced_watches() >= 4, timeout=30, what="the operator's watches")
        assert proxy.freeze() >= 4, "the operator's watch connections were not frozen"
        cluster.helm("rollback", "agents", "1", "-n", namespace)
        for d in ("agents", "agents-controllers"):
            cluster.rollout_status(namespace, d)
        status = wait_verdict(cluster, namespace, "frozen", timeout=180)["status"]
        log = op.log()
    assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status.get("message")
    for target in status["targets"]:
        observed = [image for images_ in target["observedImages"].values() for image in images_]
        assert observed, target
        assert target["availableReplicas"] == 2 and target["digestsVerified"], target
    assert "the caches say Failed, the API server says Succeeded" in log, log[-3000:]


def test_hanging_remotes_hold_no_other_verification(
    cluster: Cluster, namespace: str, tmp_path: Path, deployed_a_then_b: tuple[GitOpsRepo, str, str]
) -> None:
    """Ten verifications read values from remotes that accept connections and never answer (http and
    ssh); a verification of another Deployment still reaches its verdict while they all hang, and each
    hanging one ends ValuesUnavailable within the git budget."""
    remote = HangingRemote()
    try:
        with running_operator(cluster, [namespace], tmp_path):
            hanging = []
            for i in range(10):
                url = (
                    f"http://127.0.0.1:{remote.port}/r{i}.git"
                    if i % 2
                    else f"ssh://git@127.0.0.1:{remote.port}/r{i}.git"
                )
                name = f"hang-{i}"
                spec = {"revision": "main", "valuesFrom": {"git": {"repoURL": url, "path": VALUES_PATH}}}
                cluster.apply(verification(name, spec), namespace)
                hanging.append(name)
            cluster.wait_for(
                lambda: all(status_of(cluster, namespace, n).get("phase") == "Running" for n in hanging),
                timeout=60,
                what="every hanging verification to start",
            )
            # The plain verification: the B release that runs now, images given in the spec.
            plain = {
                "targets": [
                    {"name": "agents", "image": expected("B", "registry.example/lab/jangar-control-plane")},
                    {"name": "agents-controllers", "image": expected("B")},
                ],
                "timeoutSeconds": 60,
            }
            cluster.apply(verification("plain", plain), namespace)
            verdict = wait_verdict(cluster, namespace, "plain", timeout=30)["status"]
            still = {n: status_of(cluster, namespace, n) for n in hanging}
            assert (verdict["phase"], verdict["reason"]) == ("Succeeded", "Verified"), verdict.get("message")
            decided = {n: (s.get("phase"), s.get("message")) for n, s in still.items() if "completedAt" in s}
            assert not decided, decided
            print(f"plain verification: {verdict['durationSeconds']}s from start to verdict while 10 remotes hang")
            ended = [wait_verdict(cluster, namespace, n, timeout=120)["status"] for n in hanging]
    finally:
        remote.close()
    assert {(s["phase"], s["reason"]) for s in ended} == {("Failed", "ValuesUnavailable")}
    print("hanging verifications ended after (s):", sorted(s["durationSeconds"] for s in ended))
