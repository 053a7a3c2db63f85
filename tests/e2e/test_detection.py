"""Rollback detection on the real cluster, with Applications driven the way Argo CD drives them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.agents import VALUES_PATH, GitOpsRepo, expected, images, merge, verification, wait_verdict
from tests.e2e.argocd_sim import ArgoCD, commit_file, revert_commit, seed_repo
from tests.e2e.support import Cluster, running_operator
from tests.e2e.test_verifier import metric

APP = "agents"


@dataclass
class Scene:
    cluster: Cluster
    argo: ArgoCD
    repo: GitOpsRepo
    namespace: str  # where the agents app runs and verifications are created
    tmp: Path

    def settings(self, **app: Any) -> Path:
        watched = {
            "name": APP,
            "namespace": self.argo.namespace,
            "verificationNamespace": self.namespace,
            "valuesFrom": {"git": {"path": VALUES_PATH}},
            "timeoutSeconds": 60,
            **app,
        }
        path = self.tmp / f"settings-{time.monotonic_ns()}.yaml"
        path.write_text(
            yaml.safe_dump({"argocdNamespace": self.argo.namespace, "detection": {"applications": [watched]}})
        )
        return path

    def operator(self, **app: Any) -> Any:
        return running_operator(
            self.cluster, [self.namespace], self.tmp / f"op-{time.monotonic_ns()}", settings=self.settings(**app)
        )

    def verifications(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get("-n", self.namespace, "rbv")["items"]
        return items

    def newest_id(self) -> int:
        return int(self.argo.history(APP)[-1]["id"])

    def verdict_of(self, history_id: int, timeout: float = 90) -> dict[str, Any]:
        name = f"{APP}-rollback-{history_id}"
        self.cluster.wait_for(
            lambda: self.cluster.kubectl("-n", self.namespace, "get", "rbv", name, check=False).returncode == 0,
            timeout=30,
            what=f"the detection to create {name}",
        )
        return wait_verdict(self.cluster, self.namespace, name, timeout)


@pytest.fixture
def scene(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Scene]:
    cluster.install_crd()
    argo = ArgoCD(cluster, f"{namespace}-argocd")
    argo.install()
    repo = GitOpsRepo(tmp_path / "gitops")
    seed_repo(repo)
    argo.create_application(APP, repo, namespace)
    yield Scene(cluster, argo, repo, namespace, tmp_path)
    cluster.kubectl("delete", "namespace", argo.namespace, "--wait=false", check=False)


def deploy(scene: Scene, values: dict[str, Any], message: str) -> str:
    rev = scene.repo.commit_values(values, message)
    scene.argo.sync(APP)
    return rev


def test_argocd_app_rollback_is_detected_and_verified(scene: Scene) -> None:
    with scene.operator() as operator:
        rev_a = deploy(scene, images("A"), "release A")
        rev_b = deploy(scene, images("B"), "release B")
        assert scene.verifications() == [], "forward syncs create nothing"
        scene.argo.rollback(APP)

        obj = scene.verdict_of(scene.newest_id())
        status = obj["status"]
        assert (status["phase"], status["reason"], status["detectedBy"]) == ("Succeeded", "Verified", "ArgoCDHistory")
        assert (obj["spec"]["revision"], obj["spec"]["fromRevision"]) == (rev_a, rev_b)
        assert obj["spec"]["application"] == {"name": APP, "namespace": scene.argo.namespace}
        assert {c["type"]: c["status"] for c in status["conditions"]}["ApplicationHealthy"] == "True"
        text = operator.metrics()
        assert metric(text, "rollback_verification_detected_total", application=APP, detected_by="ArgoCDHistory") == 1
        assert metric(text, "rollback_verification_completed_total", application=APP, phase="Succeeded") == 1

        # The same revision synced again: a new history entry, but no second verification.
        scene.argo.sync(APP, rev_a)
        time.sleep(3)
        assert len(scene.verifications()) == 1


def test_a_git_revert_commit_is_a_content_revert(scene: Scene) -> None:
    with scene.operator():
        deploy(scene, images("A"), "release A")
        rev_b = deploy(scene, images("B"), "release B")
        revert_commit(scene.repo, rev_b)
        scene.argo.sync(APP)

        obj = scene.verdict_of(scene.newest_id())
        assert obj["status"]["detectedBy"] == "ContentRevert"
        assert (obj["status"]["phase"], obj["status"]["reason"]) == ("Succeeded", "Verified")
        assert obj["spec"]["fromRevision"] == rev_b


def test_a_forward_sync_to_new_images_creates_nothing(scene: Scene) -> None:
    with scene.operator() as operator:
        deploy(scene, images("A"), "release A")
        deploy(scene, images("B"), "release B")
        deploy(scene, images("C"), "release C")
        time.sleep(3)
        assert scene.verifications() == []
        assert metric(operator.metrics(), "rollback_verification_detected_total", application=APP) is None


def test_a_rollback_that_leaves_the_controllers_on_the_new_image_fails(scene: Scene) -> None:
    with scene.operator(timeoutSeconds=15) as operator:
        deploy(scene, images("A"), "release A")
        rev_b = deploy(scene, images("B"), "release B")
        # An SRE pinned the controllers in the Application's own Helm values: a key the revert does not touch.
        scene.argo.set_helm_values(APP, {"controllers": {"image": images("B")["image"]}})
        scene.argo.sync(APP)
        revert_commit(scene.repo, rev_b)
        scene.argo.sync(APP)

        status = scene.verdict_of(scene.newest_id())["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ImageMismatch")
        assert "agents-controllers" in status["message"] and expected("B") in status["message"]
        text = operator.metrics()
        assert (
            metric(
                text, "rollback_verification_completed_total", application=APP, phase="Failed", reason="ImageMismatch"
            )
            == 1
        )


def test_a_resource_left_behind_is_reported(scene: Scene) -> None:
    with scene.operator():
        deploy(scene, images("A"), "release A")
        deploy(scene, merge(images("B"), {"extraConfig": {"enabled": True}}), "release B with extra config")
        scene.argo.rollback(APP)

        status = scene.verdict_of(scene.newest_id())["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), "orphans fail only with failOnOrphans"
        assert status["orphanedResources"] == [
            {"group": "", "kind": "ConfigMap", "namespace": scene.namespace, "name": "agents-extra-config"}
        ]
        assert "agents-extra-config" in status["message"]


def test_a_rollback_while_the_operator_was_down_is_detected_once_it_is_back(scene: Scene) -> None:
    deploy(scene, images("A"), "release A")
    deploy(scene, images("B"), "release B")
    scene.argo.rollback(APP)
    assert scene.verifications() == []
    with scene.operator():
        status = scene.verdict_of(scene.newest_id())["status"]
        assert (status["phase"], status["detectedBy"]) == ("Succeeded", "ArgoCDHistory")
    with scene.operator():  # a second restart finds the verification and creates nothing new
        time.sleep(3)
        assert len(scene.verifications()) == 1


def test_bad_applications_end_in_values_unavailable_not_in_a_crash(scene: Scene) -> None:
    with scene.operator(timeoutSeconds=20) as operator:
        # Values that do not parse at the revision rolled back to.
        deploy(scene, images("A"), "release A")
        broken = commit_file(scene.repo, VALUES_PATH, "controlPlane: [unclosed\n", "broken values")
        scene.argo.sync(APP, check=False)  # helm cannot render it either: a failed sync, no history
        assert scene.argo.history(APP)[-1]["revision"] != broken
        deploy(scene, images("B"), "release B")
        scene.argo.rollback(APP)
        status = scene.verdict_of(scene.newest_id())["status"]
        assert status["phase"] == "Succeeded"  # rolled back to A, whose values parse

        # A revision git cannot resolve, rolled back to through history (a rewritten GitOps repo).
        history = scene.argo.history(APP)
        ghost = "f" * 40
        history += [
            {**history[-1], "id": history[-1]["id"] + 1, "revision": ghost},
            {**history[-1], "id": history[-1]["id"] + 2, "revision": history[-1]["revision"]},
            {**history[-1], "id": history[-1]["id"] + 3, "revision": ghost},
        ]
        patch = json.dumps({"status": {"history": history}})  # as Argo CD writes it: no status subresource
        scene.cluster.kubectl(
            "-n", scene.argo.namespace, "patch", "applications.argoproj.io", APP, "--type=merge", "-p", patch
        )
        status = scene.verdict_of(history[-1]["id"])["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ValuesUnavailable")
        assert ghost in status["message"]
        assert operator.process.poll() is None


def test_a_multi_source_application_fails_with_a_clear_reason(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    cluster.install_crd()
    argo = ArgoCD(cluster, f"{namespace}-argocd")
    argo.install()
    repo = GitOpsRepo(tmp_path / "gitops")
    seed_repo(repo)
    argo.create_application(APP, repo, namespace, multi_source=True)
    scene = Scene(cluster, argo, repo, namespace, tmp_path)
    with scene.operator(timeoutSeconds=20):
        deploy(scene, images("A"), "release A")
        deploy(scene, images("B"), "release B")
        argo.rollback(APP)
        status = scene.verdict_of(scene.newest_id())["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ValuesUnavailable")
        assert "multiple sources" in status["message"]


def test_an_application_without_history_and_an_unknown_application_are_fine(scene: Scene) -> None:
    with scene.operator() as operator:  # the agents Application exists, but was never synced
        time.sleep(2)
        assert scene.verifications() == []
        assert operator.process.poll() is None
    with scene.operator(name="no-such-app") as operator:
        deploy(scene, images("A"), "release A")
        time.sleep(2)
        assert scene.verifications() == []
        assert f"Application {scene.argo.namespace}/no-such-app from the settings does not exist" in operator.log()
        assert operator.process.poll() is None


def test_a_post_sync_hook_verification_is_marked_and_verified(scene: Scene) -> None:
    with scene.operator():
        deploy(scene, images("A"), "release A")
        hook = verification(
            "agents-postsync",
            {
                "application": {"name": APP, "namespace": scene.argo.namespace},
                "valuesFrom": {"git": {"path": VALUES_PATH, "repoURL": scene.repo.url}},
            },
            annotations={
                "argocd.argoproj.io/hook": "PostSync",
                "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            },
        )
        scene.cluster.apply(hook, scene.namespace)
        status = wait_verdict(scene.cluster, scene.namespace, "agents-postsync", 60)["status"]
        assert (status["phase"], status["detectedBy"]) == ("Succeeded", "PostSyncHook")
        assert status["revision"] == scene.argo.history(APP)[-1]["revision"]


def test_detected_verifications_beyond_the_history_limit_are_deleted_manual_ones_kept(scene: Scene) -> None:
    from rollback_verifier.detection import APPLICATION_LABEL, DETECTED_BY_LABEL

    # Three older detected verdicts and a manual one, finished before the rollback below.
    missing = {"targets": [{"name": "gone", "image": expected("A")}], "timeoutSeconds": 1}
    older = [f"{APP}-rollback-old-{i}" for i in range(3)]
    with scene.operator(historyLimit=2):
        for name in older:
            labels = {APPLICATION_LABEL: APP, DETECTED_BY_LABEL: "ArgoCDHistory"}
            scene.cluster.apply(verification(name, missing, labels=labels), scene.namespace)
            wait_verdict(scene.cluster, scene.namespace, name, timeout=30)
            time.sleep(1)  # creationTimestamp has a resolution of one second: keep the order unambiguous
        scene.cluster.apply(verification("manual", missing, labels={APPLICATION_LABEL: APP}), scene.namespace)
        wait_verdict(scene.cluster, scene.namespace, "manual", timeout=30)

        deploy(scene, images("A"), "release A")
        deploy(scene, images("B"), "release B")
        scene.argo.rollback(APP)
        newest = f"{APP}-rollback-{scene.newest_id()}"
        scene.verdict_of(scene.newest_id())

        def kept() -> set[str] | None:
            names = {v["metadata"]["name"] for v in scene.verifications()}
            return names if names == {newest, older[2], "manual"} else None

        scene.cluster.wait_for(kept, timeout=30, what="the two oldest detected verifications to be deleted")
