"""Argo CD integration proven by Argo CD itself.

The GitOps chart carries deploy/argocd/examples/postsync-hook.yaml (PostSync, BeforeHookCreation); real
Argo CD creates it during a real `argocd app sync` and waits on its health, which it computes with the
Lua check of deploy/argocd registered in the real argocd-cm (resource.customizations, installed by the
harness). The operator verifies the hook object and marks it detectedBy PostSyncHook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from harness.agents import GitOpsRepo, expected, images
from harness.argocd import ArgoCD
from harness.support import Cluster, running_operator

HOOK = "agents-postsync"


def hook_results(app: dict[str, Any]) -> list[dict[str, Any]]:
    resources = app["status"]["operationState"]["syncResult"]["resources"]
    return [r for r in resources if r["kind"] == "RollbackVerification"]


def hook_node(argocd: ArgoCD, app: str) -> dict[str, Any]:
    nodes = [n for n in argocd.resource_tree(app) if n["kind"] == "RollbackVerification"]
    assert len(nodes) == 1, nodes
    return nodes[0]


def hooked_chart(
    cluster: Cluster, argocd: ArgoCD, namespace: str, tmp_path: Path, prefix: str
) -> tuple[str, GitOpsRepo, Path]:
    """An Application name, a GitOps repo whose chart carries the PostSync hook for it, and operator
    settings without detection (only the hook makes verifications)."""
    cluster.install_crd()
    app = f"{prefix}-{namespace.removeprefix('t-')}"
    repo = GitOpsRepo(tmp_path / "gitops")
    repo.seed_chart(hook_for=app, hook_timeout_seconds=15)
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"argocdNamespace": argocd.namespace, "detection": {"enabled": False}}))
    return app, repo, settings


def test_a_post_sync_hook_verification_decides_the_sync(
    cluster: Cluster, argocd: ArgoCD, namespace: str, tmp_path: Path
) -> None:
    app, repo, settings = hooked_chart(cluster, argocd, namespace, tmp_path, "hook")
    argocd.create_application(app, repo, namespace)
    try:
        with running_operator(cluster, [namespace], tmp_path / "op", settings=settings):
            rev_a = repo.commit_values(images("A"), "release A")
            synced = argocd.sync(app, rev_a)
            op = synced["status"]["operationState"]
            assert op["phase"] == "Succeeded"
            assert [(r["name"], r["hookType"], r["hookPhase"]) for r in hook_results(synced)] == [
                (HOOK, "PostSync", "Succeeded")
            ]
            rbv = cluster.get("-n", namespace, "rbv", HOOK)
            first_uid, status = rbv["metadata"]["uid"], rbv["status"]
            assert (status["phase"], status["reason"], status["detectedBy"]) == (
                "Succeeded",
                "Verified",
                "PostSyncHook",
            )
            assert status["revision"] == rev_a
            assert [h["revision"] for h in synced["status"]["history"]] == [rev_a]
            node = hook_node(argocd, app)
            assert node["health"]["status"] == "Healthy"

            # An override the GitOps values do not carry: the controllers run C, the values say A. The
            # hook (a new object: BeforeHookCreation) fails, and with it the sync.
            patch = {"spec": {"source": {"helm": {"valuesObject": {"controllers": {"image": images("C")["image"]}}}}}}
            cluster.kubectl(
                "-n", argocd.namespace, "patch", "applications.argoproj.io", app, "--type=merge",
                "-p", yaml.safe_dump(patch),
            )  # fmt: skip
            proc, failed = argocd.try_sync(app, rev_a)
            assert proc.returncode != 0
            op = failed["status"]["operationState"]
            assert op["phase"] == "Failed", op
            [result] = hook_results(failed)
            assert (result["hookType"], result["hookPhase"]) == ("PostSync", "Failed")
            assert result["message"].startswith("ImageMismatch: "), result
            rbv = cluster.get("-n", namespace, "rbv", HOOK)
            assert rbv["metadata"]["uid"] != first_uid, "BeforeHookCreation: a new hook object"
            assert (rbv["status"]["phase"], rbv["status"]["reason"], rbv["status"]["detectedBy"]) == (
                "Failed",
                "ImageMismatch",
                "PostSyncHook",
            )
            assert expected("C") in rbv["status"]["message"]
            # Argo CD's own view of the hook, computed by the Lua check in argocd-cm.
            node = hook_node(argocd, app)
            assert node["health"]["status"] == "Degraded"
            assert node["health"]["message"] == f"ImageMismatch: {rbv['status']['message']}"
            assert len(failed["status"]["history"]) == 1, "a failed sync adds no history entry"
    finally:
        argocd.delete_application(app)
