"""Reading an Argo CD Application: orphans and health."""

from __future__ import annotations

from rollback_verifier.core.argocd import application_health, orphans_of


def test_orphans_come_from_requires_pruning_and_from_the_last_operations_prune_skips() -> None:
    app = {
        "status": {
            "resources": [
                {"kind": "ConfigMap", "namespace": "agents", "name": "left", "requiresPruning": True},
                {"group": "apps", "kind": "Deployment", "namespace": "agents", "name": "agents", "status": "Synced"},
            ],
            "operationState": {
                "syncResult": {
                    "revision": "r1",
                    "resources": [
                        {"kind": "ConfigMap", "namespace": "agents", "name": "left", "status": "PruneSkipped"},
                        {"kind": "Secret", "namespace": "agents", "name": "skipped", "status": "PruneSkipped"},
                        {
                            "group": "apps",
                            "kind": "Deployment",
                            "namespace": "agents",
                            "name": "agents",
                            "status": "Synced",
                        },
                    ],
                }
            },
        }
    }
    names = [(o.kind, o.name) for o in orphans_of(app, "r1")]
    assert names == [("ConfigMap", "left"), ("Secret", "skipped")]
    # The operation synced another revision: its results say nothing about this one.
    assert [(o.kind, o.name) for o in orphans_of(app, "r2")] == [("ConfigMap", "left")]
    assert orphans_of(None) == [] and orphans_of({"status": {"resources": ["junk", None]}}) == []


def test_application_health() -> None:
    assert application_health(None) is None
    assert application_health({}) == "Unknown"
    assert application_health({"status": {"health": {"status": "Degraded"}}}) == "Degraded"


def test_operation_running() -> None:
    from rollback_verifier.core.argocd import operation_running

    assert not operation_running(None) and not operation_running({"status": {}})
    assert operation_running({"operation": {"sync": {}}})
    assert operation_running({"status": {"operationState": {"phase": "Running"}}})
    assert not operation_running({"status": {"operationState": {"phase": "Succeeded"}}})
