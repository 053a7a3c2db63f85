"""The operator on the real cluster: the agents app deployed at A, upgraded to B, rolled back to A."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.agents import (
    DIGESTS,
    GitOpsRepo,
    deploy_a_then_b,
    expected,
    git_values_spec,
    helm_deploy,
    images,
    merge,
    verification,
    wait_verdict,
)
from harness.support import Cluster, Operator, running_operator, start_operator_wait, wait_saw_every_verdict


@pytest.fixture
def operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    cluster.install_crd()
    with running_operator(cluster, [namespace], tmp_path) as op:
        yield op


@pytest.fixture
def rolled_back(cluster: Cluster, namespace: str, tmp_path: Path) -> tuple[GitOpsRepo, str, str]:
    """Revision 1 (images A) deployed, then revision 2 (B), then `helm rollback` to A."""
    repo = GitOpsRepo(tmp_path / "gitops")
    rev_a, rev_b = deploy_a_then_b(cluster, namespace, repo)
    cluster.helm("rollback", "agents", "1", "-n", namespace)
    return repo, rev_a, rev_b


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def events_for(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    items = cluster.get("-n", namespace, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return sorted(items, key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")


def test_a_manual_verification_of_a_real_rollback_succeeds(
    cluster: Cluster, namespace: str, operator: Operator, rolled_back: tuple[GitOpsRepo, str, str]
) -> None:
    repo, rev_a, rev_b = rolled_back
    spec = git_values_spec(repo, rev_a, fromRevision=rev_b, timeoutSeconds=90)
    cluster.apply(verification("rollback-to-a", spec), namespace)

    obj = wait_verdict(cluster, namespace, "rollback-to-a", timeout=90)
    status = obj["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), status.get("message")
    assert status["message"] == "2/2 Deployments run the reverted images (digests verified)"
    assert (status["revision"], status["fromRevision"], status["detectedBy"]) == (rev_a, rev_b, "Manual")
    assert status["shortRevision"] == rev_a[:8]
    targets = {t["name"]: t for t in status["targets"]}
    cp = targets["agents"]
    assert cp["expectedImages"] == {"control-plane": expected("A", "registry.example/lab/jangar-control-plane")}
    assert cp["observedImages"] == {"control-plane": [f"registry.example/lab/jangar-control-plane@{DIGESTS['A']}"]}
    assert cp["digestsVerified"] and cp["rolloutComplete"] and cp["availableReplicas"] == 2
    assert targets["agents-controllers"]["expectedImages"] == {"controllers": expected("A")}
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "ExpectedImagesResolved": "True",
        "RolloutComplete": "True",
        "ImagesMatch": "True",
        "Ready": "True",
    }
    assert status["durationSeconds"] >= 0 and status["completedAt"] >= status["startedAt"]

    text = operator.metrics()
    assert metric(text, "rollback_verification_completed_total", phase="Succeeded", reason="Verified") == 1
    assert metric(text, "rollback_verification_duration_seconds_count", application="", phase="Succeeded") == 1
    assert metric(text, "rollback_verification_in_progress", application="") == 0
    reasons = [e["reason"] for e in events_for(cluster, namespace, "rollback-to-a")]
    assert reasons.count("Verified") == 1 and "Started" in reasons

    printed = cluster.kubectl("-n", namespace, "get", "rbv").stdout
    assert "Succeeded" in printed and rev_a[:8] in printed


def test_a_controllers_override_left_in_place_fails_with_image_mismatch(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    rev_a = repo.commit_values(images("A"), "release A")
    override = {"controllers": {"image": images("B")["image"]}}
    rev_b = repo.commit_values(merge(images("B"), override), "release B, controllers pinned by an override")
    helm_deploy(cluster, namespace, repo.values_at(rev_b))
    # The "rollback" reverts image.* and controlPlane.image.* but leaves the override behind.
    helm_deploy(cluster, namespace, merge(images("A"), override))

    spec = git_values_spec(repo, rev_a, timeoutSeconds=15)
    cluster.apply(verification("partial-rollback", spec), namespace)
    status = wait_verdict(cluster, namespace, "partial-rollback", timeout=60)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ImageMismatch")
    assert "agents-controllers" in status["message"] and expected("B") in status["message"]
    targets = {t["name"]: t for t in status["targets"]}
    assert targets["agents"]["digestsVerified"] is True
    assert targets["agents-controllers"]["digestsVerified"] is False
    text = operator.metrics()
    assert metric(text, "rollback_verification_completed_total", phase="Failed", reason="ImageMismatch") == 1


def test_pods_that_never_get_ready_fail_at_the_deadline_not_before(
    cluster: Cluster, namespace: str, operator: Operator, rolled_back: tuple[GitOpsRepo, str, str]
) -> None:
    repo, rev_a, _ = rolled_back
    # A rollout that can never finish: the reverted pods never become Ready.
    helm_deploy(cluster, namespace, merge(repo.values_at(rev_a), {"neverReady": True}))
    timeout = 12
    cluster.apply(verification("stuck", git_values_spec(repo, rev_a, timeoutSeconds=timeout)), namespace)

    # The positive signal first: the operator has judged the rollout that cannot finish (a status listing
    # the targets, one not rolled out). Having judged it, it still says Running: it waits for the deadline.
    def judged_unfinished() -> dict[str, Any] | None:
        status: dict[str, Any] = cluster.get("-n", namespace, "rbv", "stuck").get("status") or {}
        targets = status.get("targets") or []
        return status if any(not t.get("rolloutComplete") for t in targets) else None

    midway = cluster.wait_for(judged_unfinished, timeout=timeout + 30, what="the operator to judge the rollout")
    assert midway["phase"] == "Running", midway
    assert "waiting" in midway["message"]

    status = wait_verdict(cluster, namespace, "stuck", timeout=timeout + 30)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "RolloutTimeout")
    assert status["durationSeconds"] >= timeout


def test_a_progress_deadline_exceeded_fails_at_once(
    cluster: Cluster, namespace: str, operator: Operator, rolled_back: tuple[GitOpsRepo, str, str]
) -> None:
    repo, rev_a, _ = rolled_back
    helm_deploy(cluster, namespace, merge(repo.values_at(rev_a), {"neverReady": True, "progressDeadlineSeconds": 2}))
    cluster.apply(verification("deadline", git_values_spec(repo, rev_a, timeoutSeconds=300)), namespace)
    status = wait_verdict(cluster, namespace, "deadline", timeout=90)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ProgressDeadlineExceeded")
    assert status["durationSeconds"] < 300


def test_a_missing_deployment_is_target_not_found(cluster: Cluster, namespace: str, operator: Operator) -> None:
    spec = {"targets": [{"name": "nope", "image": expected("A")}], "timeoutSeconds": 3}
    cluster.apply(verification("missing", spec), namespace)
    status = wait_verdict(cluster, namespace, "missing", timeout=30)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "TargetNotFound")
    assert f"Deployment {namespace}/nope not found" in status["message"]


def test_missing_values_end_with_values_unavailable_naming_what_is_missing(
    cluster: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    repo = GitOpsRepo(tmp_path / "gitops")
    rev = repo.commit_values(images("A"), "release A")
    spec = {"revision": rev, "valuesFrom": {"git": {"repoURL": repo.url, "path": "no/such/values.yaml"}}}
    cluster.apply(verification("no-values", spec), namespace)
    status = wait_verdict(cluster, namespace, "no-values", timeout=30)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ValuesUnavailable")
    assert "no/such/values.yaml" in status["message"]
    warnings = [e for e in events_for(cluster, namespace, "no-values") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["ValuesUnavailable"]


def test_the_api_server_rejects_an_invalid_spec_and_any_edit_of_spec(cluster: Cluster, namespace: str) -> None:
    cluster.install_crd()
    bad = verification(
        "bad", {"targets": [{"name": "agents"}], "valuesFrom": {"git": {"path": "x"}, "applicationHelmValues": True}}
    )
    proc = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert "a target needs image or imageValues" in proc.stderr
    assert "valuesFrom needs exactly one of git or applicationHelmValues" in proc.stderr

    cluster.apply(verification("good", {"targets": [{"name": "agents", "image": expected("A")}]}), namespace)
    edit = cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "rbv",
        "good",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"timeoutSeconds": 5}}),
        check=False,
    )
    assert edit.returncode != 0
    assert "spec is immutable" in edit.stderr


def test_an_operator_killed_mid_verification_reaches_the_same_single_verdict(
    cluster: Cluster, namespace: str, tmp_path: Path, rolled_back: tuple[GitOpsRepo, str, str]
) -> None:
    repo, rev_a, _ = rolled_back
    cluster.install_crd()
    # The rollback is not applied yet when the verification starts: it is mid-flight when we kill.
    helm_deploy(cluster, namespace, repo.values_at(rev_a) | {"neverReady": True})
    cluster.apply(verification("survivor", git_values_spec(repo, rev_a, timeoutSeconds=120)), namespace)
    with running_operator(cluster, [namespace], tmp_path / "first") as first:
        started = cluster.wait_for(
            lambda: cluster.get("-n", namespace, "rbv", "survivor").get("status", {}).get("startedAt"),
            timeout=30,
            what="the verification to start",
        )
        first.stop(kill=True)

    helm_deploy(cluster, namespace, repo.values_at(rev_a))  # the rollout now completes, with nobody watching
    for d in ("agents", "agents-controllers"):
        cluster.rollout_status(namespace, d)
    assert cluster.get("-n", namespace, "rbv", "survivor")["status"]["phase"] == "Running"

    with running_operator(cluster, [namespace], tmp_path / "second") as second:
        status = wait_verdict(cluster, namespace, "survivor", timeout=60)["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified")
        assert status["startedAt"] == started, "the restarted operator kept the original start (and deadline)"
        # Counted just after the write lands (as its reply comes back): the object can be seen first.
        counted = cluster.wait_for(
            lambda: metric(second.metrics(), "rollback_verification_completed_total", phase="Succeeded"),
            timeout=30,
            what="the restarted operator to count its verdict",
        )
        assert counted == 1
    # A third start finds a final verdict and leaves it alone.
    with running_operator(cluster, [namespace], tmp_path / "third") as third:
        wait_saw_every_verdict(cluster, third, 1)  # it has listed and judged the verdict: now nothing may follow
        assert metric(third.metrics(), "rollback_verification_completed_total", phase="Succeeded") is None
    assert cluster.get("-n", namespace, "rbv", "survivor")["status"] == status
    verdict_events = [e for e in events_for(cluster, namespace, "survivor") if e["reason"] == "Verified"]
    assert len(verdict_events) == 1 and verdict_events[0].get("count", 1) == 1


def test_a_broken_object_does_not_stop_the_others(cluster: Cluster, namespace: str, operator: Operator) -> None:
    # Schema-valid but unusable: an explicit image that is no image reference.
    cluster.apply(verification("broken", {"targets": [{"name": "agents", "image": "UPPER/Case:??"}]}), namespace)
    cluster.apply(
        verification("fine", {"targets": [{"name": "nope", "image": expected("A")}], "timeoutSeconds": 2}), namespace
    )
    broken = wait_verdict(cluster, namespace, "broken", timeout=30)["status"]
    assert (broken["phase"], broken["reason"]) == ("Failed", "InvalidSpec")
    assert wait_verdict(cluster, namespace, "fine", timeout=30)["status"]["reason"] == "TargetNotFound"
    assert operator.process.poll() is None


def test_start_wait_reports_a_crashed_operator(cluster: Cluster, tmp_path: Path) -> None:
    # The harness itself must fail loudly, not hang, when the operator cannot start.
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rollback_verifier",
            "run",
            "--namespace",
            "x",
            "--settings",
            str(tmp_path / "none.yaml"),
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.wait(timeout=30) == 2
    out = proc.stdout.read() if proc.stdout else ""
    assert "cannot read settings file" in out
    with pytest.raises(AssertionError, match="exited with 2"):
        start_operator_wait(Operator(proc, 1, tmp_path / "none.log"), timeout=5)


def test_the_operator_also_runs_cluster_wide(
    cluster: Cluster, namespace: str, tmp_path: Path, rolled_back: tuple[GitOpsRepo, str, str]
) -> None:
    repo, rev_a, _ = rolled_back
    cluster.install_crd()
    with running_operator(cluster, [], tmp_path, extra=["--all-namespaces"]):
        cluster.apply(verification("cluster-wide", git_values_spec(repo, rev_a, timeoutSeconds=90)), namespace)
        status = wait_verdict(cluster, namespace, "cluster-wide", timeout=90)["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Verified")
