"""Rollback detection on the real cluster, against real Argo CD: syncs with `argocd app sync`, rollbacks
with `argocd app rollback`, `git revert` commits synced, all written by Argo CD's own controller.

Argo CD runs once per session (the `argocd` fixture); each test has an Application of its own, named
after its namespace. "Nothing was created" is never checked after a sleep: a later rollback whose
verification does appear proves that the operator judged every entry before it (it judges an
Application's entries in order), and then the full list of verifications is compared.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.agents import (
    VALUES_PATH,
    GitOpsRepo,
    expected,
    images,
    merge,
    release_images,
    verification,
    wait_verdict,
)
from harness.argocd import ArgoCD, CommandFailed
from harness.support import Cluster, Operator, running_operator

from tests.e2e.test_verifier import metric


@dataclass
class Scene:
    cluster: Cluster
    argo: ArgoCD
    repo: GitOpsRepo
    namespace: str  # the Application's destination, where verifications are created
    app: str
    tmp: Path

    def settings(self, **app: Any) -> Path:
        watched = {
            "name": self.app,
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

    def verifications(self) -> list[str]:
        return sorted(i["metadata"]["name"] for i in self.cluster.get("-n", self.namespace, "rbv")["items"])

    def name(self, history_id: int) -> str:
        return f"{self.app}-rollback-{history_id}"

    def newest_id(self) -> int:
        return int(self.argo.history(self.app)[-1]["id"])

    def verdict_of(self, history_id: int, timeout: float = 90) -> dict[str, Any]:
        name = self.name(history_id)
        self.cluster.wait_for(
            lambda: self.cluster.kubectl("-n", self.namespace, "get", "rbv", name, check=False).returncode == 0,
            timeout=30,
            what=f"the detection to create {name}",
        )
        return wait_verdict(self.cluster, self.namespace, name, timeout)

    def deploy(self, values: dict[str, Any], message: str) -> str:
        """A commit to the GitOps repo, synced with `argocd app sync`."""
        rev = self.repo.commit_values(values, message)
        self.argo.sync(self.app, rev)
        return rev

    def set_helm_values(self, values: dict[str, Any]) -> None:
        """Inline Helm values in the Application (an SRE's override), as `kubectl apply` of it would set."""
        patch = {"spec": {"source": {"helm": {"valuesObject": values}}}}
        self.cluster.kubectl(
            "-n", self.argo.namespace, "patch", "applications.argoproj.io", self.app, "--type=merge",
            "-p", yaml.safe_dump(patch),
        )  # fmt: skip


def new_scene(cluster: Cluster, argo: ArgoCD, namespace: str, tmp: Path, **app_options: Any) -> Scene:
    cluster.install_crd()
    repo = GitOpsRepo(tmp / "gitops")
    repo.seed_chart()
    app = f"agents-{namespace.removeprefix('t-')}"
    argo.create_application(app, repo, namespace, **app_options)
    return Scene(cluster, argo, repo, namespace, app, tmp)


@pytest.fixture
def scene(cluster: Cluster, argocd: ArgoCD, namespace: str, tmp_path: Path) -> Iterator[Scene]:
    s = new_scene(cluster, argocd, namespace, tmp_path)
    yield s
    argocd.delete_application(s.app)


def no_traceback(operator: Operator) -> None:
    assert operator.process.poll() is None
    assert "Traceback" not in operator.log(), operator.log()[-3000:]


def test_argocd_app_rollback_is_detected_and_verified(scene: Scene) -> None:
    with scene.operator() as operator:
        rev_a = scene.deploy(images("A"), "release A")
        rev_b = scene.deploy(images("B"), "release B")
        app = scene.argo.rollback(scene.app)
        # What Argo CD wrote: a new entry with A's revision, and the app OutOfSync with the branch head (B).
        assert [h["revision"] for h in app["status"]["history"]] == [rev_a, rev_b, rev_a]
        assert (app["status"]["sync"]["status"], app["status"]["sync"]["revision"]) == ("OutOfSync", rev_b)

        obj = scene.verdict_of(2)
        status = obj["status"]
        assert (status["phase"], status["reason"], status["detectedBy"]) == ("Succeeded", "Verified", "ArgoCDHistory")
        assert (obj["spec"]["revision"], obj["spec"]["fromRevision"]) == (rev_a, rev_b)
        assert obj["spec"]["application"] == {"name": scene.app, "namespace": scene.argo.namespace}
        assert {c["type"]: c["status"] for c in status["conditions"]}["ApplicationHealthy"] == "True"
        assert scene.verifications() == [scene.name(2)], "the forward sync to B created nothing"
        text = operator.metrics()
        assert (
            metric(text, "rollback_verification_detected_total", application=scene.app, detected_by="ArgoCDHistory")
            == 1
        )
        assert metric(text, "rollback_verification_completed_total", application=scene.app, phase="Succeeded") == 1

        # The same revision synced again (entry 3 = A, like entry 2): not a rollback. Then a rollback to
        # entry 1 (B): its verification proves entry 3 was judged, and created nothing.
        scene.argo.sync(scene.app, rev_a)
        scene.argo.rollback(scene.app, 1)
        status = scene.verdict_of(4)["status"]
        assert (status["phase"], status["detectedBy"]) == ("Succeeded", "ArgoCDHistory")
        assert scene.verifications() == [scene.name(2), scene.name(4)]
        no_traceback(operator)


def test_two_rollbacks_in_a_row_the_second_to_an_older_entry(scene: Scene) -> None:
    with scene.operator():
        rev_a = scene.deploy(images("A"), "release A")
        rev_b = scene.deploy(images("B"), "release B")
        rev_c = scene.deploy(images("C"), "release C")
        scene.argo.rollback(scene.app)  # entry 3: back to B
        first = scene.verdict_of(3)
        assert (first["spec"]["revision"], first["spec"]["fromRevision"]) == (rev_b, rev_c)
        assert first["status"]["phase"] == "Succeeded"
        assert {t["name"]: t["expectedImages"] for t in first["status"]["targets"]}["agents-controllers"] == {
            "controllers": expected("B")
        }

        scene.argo.rollback(scene.app, 0)  # entry 4: back to A, older than the entry rolled back to before
        second = scene.verdict_of(4)
        assert (second["spec"]["revision"], second["spec"]["fromRevision"]) == (rev_a, rev_b)
        assert (second["status"]["phase"], second["status"]["detectedBy"]) == ("Succeeded", "ArgoCDHistory")
        assert scene.verifications() == [scene.name(3), scene.name(4)], "the forward syncs created nothing"


def test_a_git_revert_commit_synced_is_a_content_revert(scene: Scene) -> None:
    with scene.operator():
        scene.deploy(images("A"), "release A")
        rev_b = scene.deploy(images("B"), "release B")
        rev_revert = scene.repo.revert(rev_b)
        scene.argo.refresh(scene.app)
        assert scene.argo.get(scene.app)["status"]["sync"]["revision"] == rev_revert
        scene.argo.sync(scene.app)  # the branch head, as a user syncs after a revert

        obj = scene.verdict_of(2)
        assert obj["spec"]["revision"] == rev_revert
        assert obj["status"]["detectedBy"] == "ContentRevert"
        assert (obj["status"]["phase"], obj["status"]["reason"]) == ("Succeeded", "Verified")
        assert obj["spec"]["fromRevision"] == rev_b


def test_a_revert_that_leaves_the_controllers_on_the_new_image_fails(scene: Scene) -> None:
    with scene.operator(timeoutSeconds=15) as operator:
        scene.deploy(images("A"), "release A")
        rev_b = scene.deploy(images("B"), "release B")
        # An SRE pinned the controllers in the Application's own Helm values: a key the revert does not touch.
        scene.set_helm_values({"controllers": {"image": images("B")["image"]}})
        scene.argo.sync(scene.app, rev_b)
        scene.argo.sync(scene.app, scene.repo.revert(rev_b))

        status = scene.verdict_of(3)["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "ImageMismatch")
        assert "agents-controllers" in status["message"] and expected("B") in status["message"]
        text = operator.metrics()
        completed = metric(
            text, "rollback_verification_completed_total", application=scene.app, phase="Failed", reason="ImageMismatch"
        )
        assert completed == 1


def test_a_rollback_that_leaves_a_resource_behind_reports_it(scene: Scene) -> None:
    with scene.operator():
        scene.deploy(images("A"), "release A")
        scene.deploy(merge(images("B"), {"extraConfig": {"enabled": True}}), "release B with extra config")
        app = scene.argo.rollback(scene.app)
        # Argo CD's own account: the rollback (no pruning) skipped the ConfigMap.
        skipped = [r for r in app["status"]["operationState"]["syncResult"]["resources"] if r["kind"] == "ConfigMap"]
        assert [(r["status"], r["message"]) for r in skipped] == [("PruneSkipped", "ignored (requires pruning)")]

        status = scene.verdict_of(2)["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), "orphans fail only with failOnOrphans"
        assert status["orphanedResources"] == [
            {"group": "", "kind": "ConfigMap", "namespace": scene.namespace, "name": "agents-extra-config"}
        ]
        assert "agents-extra-config" in status["message"]


def test_a_revert_that_leaves_a_resource_behind_reports_it(scene: Scene) -> None:
    with scene.operator(failOnOrphans=True, timeoutSeconds=15):
        scene.deploy(images("A"), "release A")
        rev_b = scene.deploy(merge(images("B"), {"extraConfig": {"enabled": True}}), "release B with extra config")
        proc, app = scene.argo.try_sync(scene.app, scene.repo.revert(rev_b))
        # The sync succeeded, but the CLI fails it: the ConfigMap needs pruning, which it did not do.
        assert (proc.returncode, app["status"]["operationState"]["phase"]) == (1, "Succeeded"), proc.stderr
        assert "1 resources require pruning" in proc.stderr
        assert len(app["status"]["history"]) == 3
        # Compared with the branch head (the revert), the ConfigMap is extra: requiresPruning.
        left = [r for r in app["status"]["resources"] if r["kind"] == "ConfigMap"]
        assert [(r["name"], r["status"], r.get("requiresPruning")) for r in left] == [
            ("agents-extra-config", "OutOfSync", True)
        ]

        status = scene.verdict_of(2)["status"]
        assert (status["phase"], status["reason"], status["detectedBy"]) == (
            "Failed",
            "OrphanedResources",
            "ContentRevert",
        )
        assert "agents-extra-config" in status["message"]


def test_a_rollback_while_the_operator_was_down_is_detected_once_it_is_back(scene: Scene) -> None:
    scene.deploy(images("A"), "release A")
    scene.deploy(images("B"), "release B")
    scene.argo.rollback(scene.app)
    with scene.operator():
        status = scene.verdict_of(2)["status"]
        assert (status["phase"], status["detectedBy"]) == ("Succeeded", "ArgoCDHistory")
    with scene.operator():
        # A second start finds entry 2 verified: the next rollback's verification is the only new one.
        scene.argo.rollback(scene.app, 1)
        assert scene.verdict_of(3)["status"]["phase"] == "Succeeded"
        assert scene.verifications() == [scene.name(2), scene.name(3)]


def test_values_that_do_not_parse_fail_the_sync_and_create_nothing(scene: Scene) -> None:
    with scene.operator(timeoutSeconds=30) as operator:
        rev_a = scene.deploy(images("A"), "release A")
        broken = scene.repo.commit_file(VALUES_PATH, "controlPlane: [unclosed\n", "broken values")
        proc, app = scene.argo.try_sync(scene.app, broken)
        assert proc.returncode != 0
        op = app["status"]["operationState"]
        assert op["phase"] in ("Error", "Failed") and "ComparisonError" in op["message"], op
        assert "failed to parse" in op["message"] or "yaml" in op["message"].lower(), op["message"]
        assert [h["revision"] for h in app["status"]["history"]] == [rev_a], "Argo CD records no history entry"

        # The operator has nothing to judge; the next rollback is verified as usual.
        scene.deploy(images("B"), "release B")
        scene.argo.rollback(scene.app)
        assert scene.verdict_of(2)["status"]["phase"] == "Succeeded"
        assert scene.verifications() == [scene.name(2)]
        no_traceback(operator)


def test_history_truncated_past_ten_entries_still_detects_a_rollback(scene: Scene) -> None:
    with scene.operator():
        rev_base = scene.deploy(images("A"), "release A")
        for n in range(1, 11):
            scene.deploy(release_images(n), f"release {n}")
        history = scene.argo.history(scene.app)
        assert [h["id"] for h in history] == list(range(1, 11)), "Argo CD keeps the newest 10 entries"
        assert rev_base not in {h["revision"] for h in history}

        # A sync back to the base revision, which history no longer lists: git ancestry tells.
        scene.argo.sync(scene.app, rev_base)
        obj = scene.verdict_of(11)
        assert (obj["status"]["phase"], obj["status"]["detectedBy"]) == ("Succeeded", "RevisionAncestry")
        assert obj["spec"]["revision"] == rev_base
        assert scene.verifications() == [scene.name(11)]


def test_rollback_is_refused_while_auto_sync_is_on(scene: Scene) -> None:
    with scene.operator():
        rev_a = scene.repo.commit_values(images("A"), "release A")
        scene.argo.refresh(scene.app)  # Argo CD validates the spec against the head: it needs the values
        scene.argo.cli("app", "set", scene.app, "--sync-policy", "automated")
        scene.argo.settle(scene.app, history_length=1)
        rev_b = scene.repo.commit_values(images("B"), "release B")
        scene.argo.refresh(scene.app)
        app = scene.argo.settle(scene.app, history_length=2)
        assert [(h["revision"], h["initiatedBy"]) for h in app["status"]["history"]] == [
            (rev_a, {"automated": True}),
            (rev_b, {"automated": True}),
        ]

        with pytest.raises(CommandFailed) as refused:
            scene.argo.cli("app", "rollback", scene.app)
        assert "rollback cannot be initiated when auto-sync is enabled" in refused.value.stderr
        assert "FailedPrecondition" in refused.value.stderr
        assert len(scene.argo.history(scene.app)) == 2

        scene.argo.cli("app", "set", scene.app, "--sync-policy", "none")
        scene.argo.rollback(scene.app)
        assert scene.verdict_of(2)["status"]["phase"] == "Succeeded"
        assert scene.verifications() == [scene.name(2)]


def test_a_multi_source_application_fails_with_a_clear_reason(
    cluster: Cluster, argocd: ArgoCD, namespace: str, tmp_path: Path
) -> None:
    scene = new_scene(cluster, argocd, namespace, tmp_path, multi_source=True)
    try:
        with scene.operator(timeoutSeconds=20):
            scene.deploy(images("A"), "release A")
            scene.deploy(images("B"), "release B")
            app = argocd.rollback(scene.app)
            assert len(app["status"]["history"][-1]["revisions"]) == 2
            status = scene.verdict_of(2)["status"]
            assert (status["phase"], status["reason"]) == ("Failed", "ValuesUnavailable")
            assert "multiple sources" in status["message"]
    finally:
        argocd.delete_application(scene.app)


def test_an_unknown_application_in_the_settings_is_said_once_and_harmless(scene: Scene) -> None:
    with scene.operator(name="no-such-app") as operator:
        line = f"Application {scene.argo.namespace}/no-such-app from the settings does not exist"
        scene.cluster.wait_for(lambda: line in operator.log(), 30, "the operator to say the app does not exist")
        assert operator.log().count(line) == 1
        no_traceback(operator)


def test_detected_verifications_beyond_the_history_limit_are_deleted_manual_ones_kept(scene: Scene) -> None:
    from rollback_verifier.core.detection import APPLICATION_LABEL, DETECTED_BY_LABEL

    # Three older detected verdicts and a manual one, finished before the rollback below.
    missing = {"targets": [{"name": "gone", "image": expected("A")}], "timeoutSeconds": 1}
    older = [f"{scene.app}-rollback-old-{i}" for i in range(3)]
    with scene.operator(historyLimit=2):
        for name in older:
            labels = {APPLICATION_LABEL: scene.app, DETECTED_BY_LABEL: "ArgoCDHistory"}
            scene.cluster.apply(verification(name, missing, labels=labels), scene.namespace)
            wait_verdict(scene.cluster, scene.namespace, name, timeout=30)
            time.sleep(1)  # creationTimestamp has a resolution of one second: keep the order unambiguous
        scene.cluster.apply(verification("manual", missing, labels={APPLICATION_LABEL: scene.app}), scene.namespace)
        wait_verdict(scene.cluster, scene.namespace, "manual", timeout=30)

        scene.deploy(images("A"), "release A")
        scene.deploy(images("B"), "release B")
        scene.argo.rollback(scene.app)
        newest = scene.name(scene.newest_id())
        scene.verdict_of(scene.newest_id())

        def kept() -> set[str] | None:
            names = set(scene.verifications())
            return names if names == {newest, older[2], "manual"} else None

        scene.cluster.wait_for(kept, timeout=30, what="the two oldest detected verifications to be deleted")
