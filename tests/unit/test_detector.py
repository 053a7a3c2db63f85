"""The detector's shell on fakes of its own interfaces: which Application events create which
RollbackVerifications, once, within the lookback window, pruned to the history limit. The strategies
themselves are tested on plain histories in test_detection.py; git and Argo CD for real in tests/e2e."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from rollback_verifier.api.settings import Settings
from rollback_verifier.controller.detector import Detector
from rollback_verifier.controller.metrics import Metrics
from rollback_verifier.controller.runner import now_iso
from tests.unit.fakes import EPOCH, FakeCluster, InlinePools


def application(*revisions: str, deployed_at: float = EPOCH - 60, uid: str = "app-uid") -> dict[str, Any]:
    history = [
        {
            "id": i,
            "revision": rev,
            "deployedAt": now_iso(deployed_at),
            "source": {"repoURL": "https://git.example/gitops"},
        }
        for i, rev in enumerate(revisions)
    ]
    return {
        "metadata": {"name": "agents", "namespace": "argocd", "uid": uid},
        "spec": {"source": {"repoURL": "https://git.example/gitops"}},
        "status": {"history": history},
    }


def detector(cluster: FakeCluster, settings: dict[str, Any] | None = None, metrics: Metrics | None = None) -> Detector:
    return Detector(
        cluster,
        metrics or Metrics(),
        None,  # no git reader: only the history strategy can find a rollback
        Settings.model_validate(settings or {}),
        InlinePools(),
        now=lambda: EPOCH,
    )


def detected(metrics: Metrics) -> float:
    labels = {"application": "agents", "detected_by": "ArgoCDHistory"}
    return metrics.registry.get_sample_value("rollback_verification_detected_total", labels) or 0.0


def test_a_rollback_in_the_history_creates_one_verification_however_often_it_is_seen() -> None:
    cluster, metrics = FakeCluster(), Metrics()
    found = detector(cluster, metrics=metrics)
    app = application("r1", "r2", "r1")
    for _ in range(3):  # the Application's status changes again and again: the entry is judged once
        asyncio.run(found.on_application(app))
    assert [o["metadata"]["name"] for o in cluster.created] == ["agents-rollback-2"]
    created = cluster.created[0]
    assert created["metadata"]["namespace"] == "agents"
    assert created["spec"]["revision"] == "r1"
    assert detected(metrics) == 1


def test_a_restarted_operator_does_not_create_or_count_a_rollback_again() -> None:
    cluster = FakeCluster()
    app = application("r1", "r2", "r1")
    asyncio.run(detector(cluster).on_application(app))
    restarted = Metrics()
    asyncio.run(detector(cluster, metrics=restarted).on_application(app))  # forgets what it judged
    assert len(cluster.created) == 1  # creation is idempotent by name
    assert detected(restarted) == 0


def test_history_older_than_the_lookback_is_not_judged() -> None:
    cluster = FakeCluster()
    old = application("r1", "r2", "r1", deployed_at=EPOCH - 3601)
    asyncio.run(detector(cluster).on_application(old))
    assert cluster.created == []
    recent = application("r1", "r2", "r1", deployed_at=EPOCH - 3599)
    asyncio.run(detector(cluster).on_application(recent))
    assert len(cluster.created) == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"detection": {"enabled": False}},
        {"detection": {"applications": [{"name": "another"}]}},
    ],
)
def test_nothing_is_created_when_detection_is_off_or_the_application_not_watched(settings: dict[str, Any]) -> None:
    cluster = FakeCluster()
    asyncio.run(detector(cluster, settings).on_application(application("r1", "r2", "r1")))
    assert cluster.created == []


def test_finished_detected_verifications_beyond_the_history_limit_are_deleted() -> None:
    cluster = FakeCluster()
    found = detector(cluster, {"detection": {"applications": [{"name": "agents", "historyLimit": 1}]}})
    asyncio.run(found.on_application(application("r1", "r2", "r1")))
    cluster.write_by_someone_else("agents", "agents-rollback-2", {"phase": "Succeeded"})
    asyncio.run(found.on_application(application("r1", "r2", "r1", "r2")))  # a second rollback
    assert [o["metadata"]["name"] for o in cluster.created] == ["agents-rollback-2", "agents-rollback-3"]
    assert cluster.deleted == [("agents", "agents-rollback-2")]
    # A running one is left to reach its verdict.
    asyncio.run(found.on_application(application("r1", "r2", "r1", "r2", "r1")))
    assert cluster.deleted == [("agents", "agents-rollback-2")]


def test_a_refused_creation_is_logged_and_not_retried_in_a_loop(caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(FakeCluster):
        def create_verification(self, namespace: str, body: Any) -> dict[str, Any] | None:
            raise PermissionError("rollbackverifications is forbidden")

    cluster = Refusing()
    found = detector(cluster)
    with caplog.at_level(logging.ERROR):
        asyncio.run(found.on_application(application("r1", "r2", "r1")))
        asyncio.run(found.on_application(application("r1", "r2", "r1")))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "detection: cannot create RollbackVerification agents/agents-rollback-2: rollbackverifications is forbidden"
    ]
