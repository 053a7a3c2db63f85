"""The Argo CD double against the real cluster: it must write Applications exactly as Argo CD v3 does.

Each test pins a behaviour of argocd-behaviour.md (or of the Argo CD source cited in argocd_sim.py) that the
rollback detection e2e tests rely on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agents import GitOpsRepo, expected, images, merge
from tests.e2e.argocd_sim import (
    TRACKING_ANNOTATION,
    VALUES_FILE,
    AnotherOperationInProgress,
    ArgoCD,
    HistoryNotFound,
    RollbackRefused,
    SyncOperationFailed,
    commit_file,
    revert_commit,
    seed_repo,
)
from tests.e2e.support import Cluster

APP = "agents"
CONTROL_PLANE = "registry.example/lab/jangar-control-plane"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def argocd(cluster: Cluster, namespace: str) -> Iterator[ArgoCD]:
    """A per-test controller namespace, `<namespace>-argocd`, with Argo CD's Application CRD installed."""
    sim = ArgoCD(cluster, namespace=f"{namespace}-argocd")
    sim.install()
    yield sim
    cluster.kubectl("delete", "namespace", sim.namespace, "--wait=false", check=False)


@pytest.fixture
def repo(tmp_path: Path) -> GitOpsRepo:
    gitops = GitOpsRepo(tmp_path / "gitops")
    seed_repo(gitops)
    return gitops


def template_images(cluster: Cluster, namespace: str) -> dict[str, str]:
    out = {}
    for name in ("agents", "agents-controllers"):
        deployment = cluster.get("-n", namespace, "deployment", name)
        out[name] = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return out


def runs(release: str) -> dict[str, str]:
    return {"agents": expected(release, CONTROL_PLANE), "agents-controllers": expected(release)}


def resource(app: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in app["status"]["resources"] if r["kind"] == kind and r["name"] == name]
    assert len(found) == 1, app["status"]["resources"]
    return found[0]


def test_deploy_upgrade_and_rollback_write_history_like_argo_cd(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    created = argocd.create_application(APP, repo, namespace)
    source = created["spec"]["source"]
    assert source == {
        "repoURL": repo.url,
        "path": "charts/agents",
        "targetRevision": "main",
        "helm": {"valueFiles": ["../../argocd/applications/agents/values.yaml"]},
    }
    assert VALUES_FILE == "../../argocd/applications/agents/values.yaml"

    app = argocd.sync(APP)
    status = app["status"]
    assert app.get("operation") is None
    assert [(h["id"], h["revision"]) for h in status["history"]] == [(0, rev1)]
    first = status["history"][0]
    assert first["source"] == source
    assert first["initiatedBy"] == {"username": "admin"}
    assert TIMESTAMP.match(first["deployedAt"]) and TIMESTAMP.match(first["deployStartedAt"])
    assert (status["sync"]["status"], status["sync"]["revision"]) == ("Synced", rev1)
    assert status["sync"]["comparedTo"] == {"source": source, "destination": created["spec"]["destination"]}
    assert status["health"]["status"] == "Healthy"
    assert status["sourceType"] == "Helm"
    assert template_images(cluster, namespace) == runs("A")
    assert status["summary"]["images"] == sorted(runs("A").values())
    # Tracked the v3 way: the tracking-id annotation; the Helm release (and so the chart's instance label) is
    # the application's name.
    deployment = cluster.get("-n", namespace, "deployment", "agents")
    assert deployment["metadata"]["annotations"][TRACKING_ANNOTATION] == f"{APP}:apps/Deployment:{namespace}/agents"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/instance"] == APP
    op = status["operationState"]
    assert (op["phase"], op["message"]) == ("Succeeded", "successfully synced (all tasks run)")
    assert op["operation"]["sync"]["revision"] == rev1
    assert op["operation"]["sync"]["syncStrategy"] == {"hook": {}}
    assert op["syncResult"]["revision"] == rev1
    assert {(r["kind"], r["name"], r["status"]) for r in op["syncResult"]["resources"]} == {
        ("Deployment", "agents", "Synced"),
        ("Deployment", "agents-controllers", "Synced"),
    }
    assert all(TIMESTAMP.match(op[k]) for k in ("startedAt", "finishedAt"))

    rev2 = repo.commit_values(images("B"), "release B")
    app = argocd.sync(APP)
    assert [(h["id"], h["revision"]) for h in app["status"]["history"]] == [(0, rev1), (1, rev2)]
    assert template_images(cluster, namespace) == runs("B")
    assert app["status"]["sync"]["status"] == "Synced"

    app = argocd.rollback(APP)
    status = app["status"]
    assert app.get("operation") is None
    assert [(h["id"], h["revision"]) for h in status["history"]] == [(0, rev1), (1, rev2), (2, rev1)]
    assert status["history"][2]["source"] == status["history"][0]["source"]
    assert status["history"][2]["initiatedBy"] == {"username": "admin"}
    op = status["operationState"]
    assert (op["phase"], op["syncResult"]["revision"]) == ("Succeeded", rev1)
    assert op["operation"]["sync"]["revision"] == rev1
    assert op["operation"]["sync"]["source"] == first["source"]
    assert op["operation"]["sync"]["syncStrategy"] == {"apply": {}}
    # The branch head is still rev2: status.sync compares with it, so the app is OutOfSync.
    assert (status["sync"]["status"], status["sync"]["revision"]) == ("OutOfSync", rev2)
    assert resource(app, "Deployment", "agents")["status"] == "OutOfSync"
    assert status["health"]["status"] == "Healthy"
    assert template_images(cluster, namespace) == runs("A")

    # Rolling back by id: entry 1 (rev2) comes back as entry 3.
    app = argocd.rollback(APP, 1)
    assert [(h["id"], h["revision"]) for h in app["status"]["history"]][-1] == (3, rev2)
    assert app["status"]["sync"]["status"] == "Synced"
    with pytest.raises(HistoryNotFound, match="does not have deployment id '9'"):
        argocd.rollback(APP, 9)


def test_rollback_is_refused_while_auto_sync_is_enabled(namespace: str, argocd: ArgoCD, repo: GitOpsRepo) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application(APP, repo, namespace, automated=True)
    app = argocd.reconcile(APP)  # OutOfSync and never attempted: the controller auto-syncs
    assert app["status"]["history"][0]["initiatedBy"] == {"automated": True}
    assert app["status"]["operationState"]["operation"]["retry"] == {"limit": 5}
    rev2 = repo.commit_values(images("B"), "release B")
    app = argocd.reconcile(APP)
    assert [h["revision"] for h in app["status"]["history"]] == [rev1, rev2]
    assert argocd.reconcile(APP)["status"]["history"] == app["status"]["history"]  # Synced: nothing to do

    with pytest.raises(RollbackRefused) as refused:
        argocd.rollback(APP)
    assert refused.value.message == "rollback cannot be initiated when auto-sync is enabled"
    assert refused.value.code == "FailedPrecondition"
    after = argocd.get(APP)
    assert after.get("operation") is None
    assert after["status"]["history"] == app["status"]["history"]

    argocd.set_automated(APP, False)
    rolled = argocd.rollback(APP)
    assert [h["revision"] for h in rolled["status"]["history"]] == [rev1, rev2, rev1]


def test_dry_run_and_selective_syncs_add_no_history(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application(APP, repo, namespace)
    argocd.sync(APP)
    rev2 = repo.commit_values(images("B"), "release B")

    app = argocd.sync(APP, dry_run=True)
    op = app["status"]["operationState"]
    assert (op["phase"], op["operation"]["sync"]["dryRun"]) == ("Succeeded", True)
    assert all("(dry run)" in r["message"] for r in op["syncResult"]["resources"])
    assert [h["revision"] for h in app["status"]["history"]] == [rev1]
    assert template_images(cluster, namespace) == runs("A")

    only = [{"group": "apps", "kind": "Deployment", "name": "agents"}]
    app = argocd.sync(APP, resources=only)
    op = app["status"]["operationState"]
    assert op["phase"] == "Succeeded"
    assert [r["name"] for r in op["syncResult"]["resources"]] == ["agents"]
    assert [h["revision"] for h in app["status"]["history"]] == [rev1]
    assert template_images(cluster, namespace) == {
        "agents": expected("B", CONTROL_PLANE),
        "agents-controllers": expected("A"),
    }
    assert app["status"]["sync"]["revision"] == rev2
    assert resource(app, "Deployment", "agents")["status"] == "Synced"
    assert resource(app, "Deployment", "agents-controllers")["status"] == "OutOfSync"


def test_failed_and_errored_syncs_add_no_history(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application(APP, repo, namespace)
    argocd.sync(APP)

    # The API server rejects the Deployment: the apply fails, the operation is Failed.
    invalid = repo.commit_values(merge(images("B"), {"controlPlane": {"replicas": -1}}), "negative replicas")
    with pytest.raises(SyncOperationFailed) as failed:
        argocd.sync(APP)
    app = failed.value.app
    op = app["status"]["operationState"]
    assert op["phase"] == "Failed"
    assert op["message"].startswith("one or more objects failed to apply, reason: ")
    assert "spec.replicas" in op["message"]
    assert op["syncResult"]["revision"] == invalid
    bad = [r for r in op["syncResult"]["resources"] if r["status"] == "SyncFailed"]
    assert [(r["name"], r["hookPhase"]) for r in bad] == [("agents", "Failed")]
    assert app.get("operation") is None
    assert [h["revision"] for h in app["status"]["history"]] == [rev1]

    # The chart does not render: a ComparisonError, the operation ends in Error, nothing is applied.
    broken = commit_file(repo, "argocd/applications/agents/values.yaml", "controlPlane: [unclosed\n", "broken")
    app = argocd.sync(APP, check=False)
    op = app["status"]["operationState"]
    assert op["phase"] == "Error"
    assert op["message"].startswith("ComparisonError: Failed to load target state: failed to generate manifest")
    assert op["syncResult"]["revision"] == broken
    assert [h["revision"] for h in app["status"]["history"]] == [rev1]
    assert app.get("operation") is None
    # The refresh compares with the broken head too: sync status Unknown, the condition is recorded.
    assert app["status"]["sync"]["status"] == "Unknown"
    assert [c["type"] for c in app["status"]["conditions"]] == ["ComparisonError"]
    assert template_images(cluster, namespace)["agents-controllers"] == expected("B")


def test_revision_history_limit_keeps_the_newest_entries(namespace: str, argocd: ArgoCD, repo: GitOpsRepo) -> None:
    # Also the client-side apply path (no ServerSideApply=true sync option): kubectl's own messages and diff.
    argocd.create_application(APP, repo, namespace, revision_history_limit=2, server_side_apply=False)
    revisions = []
    for release in ("A", "B", "C"):
        revisions.append(repo.commit_values(images(release), f"release {release}"))
        app = argocd.sync(APP, wait_healthy=False)
    history = argocd.history(APP)
    assert [(h["id"], h["revision"]) for h in history] == [(1, revisions[1]), (2, revisions[2])]
    messages = [r["message"] for r in app["status"]["operationState"]["syncResult"]["resources"]]
    assert messages == ["deployment.apps/agents configured", "deployment.apps/agents-controllers configured"]
    assert app["status"]["sync"]["status"] == "Synced"
    assert "syncOptions" not in app["status"]["operationState"]["operation"]["sync"]


def test_left_behind_config_map_requires_pruning_once_the_desired_state_drops_it(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application(APP, repo, namespace)
    argocd.sync(APP)
    rev2 = repo.commit_values(merge(images("B"), {"extraConfig": {"enabled": True}}), "release B, extra config")
    app = argocd.sync(APP)
    assert resource(app, "ConfigMap", "agents-extra-config")["status"] == "Synced"

    # `argocd app rollback` to rev1: no pruning, so the ConfigMap stays; the operation reports it skipped.
    app = argocd.rollback(APP)
    cluster.get("-n", namespace, "configmap", "agents-extra-config")
    skipped = [r for r in app["status"]["operationState"]["syncResult"]["resources"] if r["kind"] == "ConfigMap"]
    assert [(r["status"], r["message"], r["hookPhase"]) for r in skipped] == [
        ("PruneSkipped", "ignored (requires pruning)", "Succeeded")
    ]
    # status.resources is compared with the branch head (rev2), which still wants the ConfigMap.
    config_map = resource(app, "ConfigMap", "agents-extra-config")
    assert (config_map["status"], config_map.get("requiresPruning")) == ("Synced", None)
    assert "group" not in config_map  # core group: omitempty

    # Pinning targetRevision back to rev1 makes rev1 the desired state: the ConfigMap is now extra.
    app = argocd.set_target_revision(APP, rev1)
    config_map = resource(app, "ConfigMap", "agents-extra-config")
    assert (config_map["status"], config_map["requiresPruning"]) == ("OutOfSync", True)
    assert (app["status"]["sync"]["status"], app["status"]["sync"]["revision"]) == ("OutOfSync", rev1)
    assert resource(app, "Deployment", "agents")["status"] == "Synced"
    assert "requiresPruning" not in resource(app, "Deployment", "agents")

    # A `git revert` of rev2 on the branch: a new revision, a new entry, and the ConfigMap still left behind.
    argocd.set_target_revision(APP, "main")
    rev3 = revert_commit(repo, rev2)
    app = argocd.sync(APP)
    assert [h["revision"] for h in app["status"]["history"]] == [rev1, rev2, rev1, rev3]
    assert resource(app, "ConfigMap", "agents-extra-config")["requiresPruning"] is True
    assert app["status"]["sync"]["status"] == "OutOfSync"
    assert template_images(cluster, namespace) == runs("A")

    # A sync with prune removes it, and the app is Synced again.
    app = argocd.sync(APP, prune=True)
    assert app["status"]["sync"]["status"] == "Synced"
    assert [r["kind"] for r in app["status"]["resources"]] == ["Deployment", "Deployment"]


def test_multi_source_apps_record_revisions_and_sources(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    created = argocd.create_application(APP, repo, namespace, multi_source=True)
    sources = created["spec"]["sources"]
    assert sources[0]["helm"]["valueFiles"] == ["$values/argocd/applications/agents/values.yaml"]
    assert sources[1] == {"repoURL": repo.url, "targetRevision": "main", "ref": "values"}
    argocd.sync(APP)
    rev2 = repo.commit_values(images("B"), "release B")
    app = argocd.sync(APP)
    assert template_images(cluster, namespace) == runs("B")

    app = argocd.rollback(APP)
    history = app["status"]["history"]
    assert [h["revisions"] for h in history] == [[rev1, rev1], [rev2, rev2], [rev1, rev1]]
    assert all("revision" not in h for h in history)
    assert all(h["sources"] == sources for h in history)
    assert all(h["source"] == {"repoURL": ""} for h in history)  # Go emits the zero struct
    op = app["status"]["operationState"]
    assert op["operation"]["sync"]["revisions"] == [rev1, rev1]
    assert op["syncResult"]["revisions"] == [rev1, rev1]
    status = app["status"]
    assert (status["sync"]["status"], status["sync"]["revisions"]) == ("OutOfSync", [rev2, rev2])
    assert status["sync"]["comparedTo"]["sources"] == sources
    assert status["sourceTypes"] == ["Helm", ""]
    assert template_images(cluster, namespace) == runs("A")


def test_health_is_progressing_then_degraded_when_the_deadline_passes(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    # With controller.resource.health.persist=true, per-resource health is stored in status.resources too.
    sim = ArgoCD(cluster, argocd.namespace, persist_resource_health=True)
    stuck = merge(images("A"), {"neverReady": True, "progressDeadlineSeconds": 3})
    repo.commit_values(stuck, "release A, never ready")
    sim.create_application(APP, repo, namespace)
    app = sim.sync(APP, wait_healthy=False)
    assert app["status"]["operationState"]["phase"] == "Succeeded"  # applied: the sync does not wait for health
    assert app["status"]["health"]["status"] == "Progressing"
    assert resource(app, "Deployment", "agents")["health"]["status"] == "Progressing"
    health = sim.refresh_health(APP, wait=True, timeout=90)
    assert health["status"] == "Degraded"
    # The app is Degraded as soon as one Deployment is; both pass their 3 s deadline, one slightly later.
    app = cluster.wait_for(
        lambda: (
            (a := sim.refresh(APP))
            and resource(a, "Deployment", "agents").get("health", {}).get("status") == "Degraded"
            and a
        ),
        timeout=60,
        what="the agents Deployment to be Degraded too",
    )
    assert app["status"]["resourceHealthSource"] == "inline"
    assert resource(app, "Deployment", "agents")["health"] == {
        "status": "Degraded",
        "message": 'Deployment "agents" exceeded its progress deadline',
    }
    assert len(sim.history(APP)) == 1
    # The default (persist=false, Argo CD 3.x): no per-resource health.
    assert "health" not in resource(argocd.refresh(APP), "Deployment", "agents")


def test_a_second_operation_is_refused_while_one_is_in_progress(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application(APP, repo, namespace)
    operation = {"sync": {"revision": rev1}, "initiatedBy": {"username": "someone"}}
    patch = json.dumps({"operation": operation})
    cluster.kubectl("-n", argocd.namespace, "patch", "applications.argoproj.io", APP, "--type", "merge", "-p", patch)
    with pytest.raises(AnotherOperationInProgress):
        argocd.sync(APP)
    app = argocd.process_operation(APP)  # the controller picks up the pending operation
    assert app.get("operation") is None
    assert app["status"]["history"][0]["initiatedBy"] == {"username": "someone"}


def test_a_rollback_restores_the_history_entry_source_inline_values_included(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application(APP, repo, namespace)
    argocd.sync(APP)
    argocd.set_helm_values(APP, images("B"))  # inline values win over the values file
    app = argocd.sync(APP)
    assert template_images(cluster, namespace) == runs("B")
    assert app["status"]["history"][1]["source"]["helm"]["valuesObject"] == images("B")

    app = argocd.rollback(APP)
    history = app["status"]["history"]
    # The same git revision three times: only the sources tell the entries apart.
    assert [h["revision"] for h in history] == [rev1, rev1, rev1]
    assert history[2]["source"] == history[0]["source"]
    assert "valuesObject" not in history[2]["source"]["helm"]
    assert template_images(cluster, namespace) == runs("A")
    assert (app["status"]["sync"]["status"], app["status"]["sync"]["revision"]) == ("OutOfSync", rev1)


def test_label_tracking_finds_left_behind_resources_by_the_instance_label(
    cluster: Cluster, namespace: str, argocd: ArgoCD, repo: GitOpsRepo
) -> None:
    sim = ArgoCD(cluster, argocd.namespace, tracking_method="label")
    repo.commit_values(images("A"), "release A")
    sim.create_application(APP, repo, namespace)
    sim.sync(APP, wait_healthy=False)
    rev2 = repo.commit_values(merge(images("B"), {"extraConfig": {"enabled": True}}), "release B, extra config")
    sim.sync(APP, wait_healthy=False)
    config_map = cluster.get("-n", namespace, "configmap", "agents-extra-config")
    assert config_map["metadata"]["labels"]["app.kubernetes.io/instance"] == APP
    assert TRACKING_ANNOTATION not in (config_map["metadata"].get("annotations") or {})
    revert_commit(repo, rev2)
    app = sim.sync(APP, wait_healthy=False)
    assert resource(app, "ConfigMap", "agents-extra-config")["requiresPruning"] is True
