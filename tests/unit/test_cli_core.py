"""Pure parts of the CLI: how cluster errors read, check's machine output, detection's start-up note."""

from __future__ import annotations

import json
import logging

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from rollback_verifier.api.models import RollbackVerificationStatus, Target
from rollback_verifier.api.settings import Settings
from rollback_verifier.cli.check import status_document
from rollback_verifier.controller.detector import Detector
from rollback_verifier.controller.kube import cluster_problem
from rollback_verifier.controller.metrics import Metrics
from rollback_verifier.core.images import parse_image
from rollback_verifier.core.rollout import deployment_view, pod_view
from rollback_verifier.core.verdict import TargetInput, decide
from tests.unit.factories import IMAGE_A, deployment, pod

HOST = "https://10.0.0.1:6443"


def test_a_403_says_who_may_not_do_what() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "message": 'deployments.apps is forbidden: User "sre" cannot list resource "deployments" in "agents"',
        }
    )
    problem = cluster_problem(ApiException(status=403, reason="Forbidden", http_resp=None), HOST)
    assert problem == "access denied (403 Forbidden): Forbidden"
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = body
    assert cluster_problem(exc, HOST) == (
        'access denied (403 Forbidden): deployments.apps is forbidden: User "sre" cannot list resource '
        '"deployments" in "agents"'
    )


def test_a_401_and_an_unreachable_server_say_what_to_do() -> None:
    assert "refused the credentials (401 Unauthorized)" in (cluster_problem(ApiException(status=401), HOST) or "")
    refused = urllib3.exceptions.MaxRetryError(None, "/version", reason=ConnectionRefusedError("Connection refused"))  # type: ignore[arg-type]
    problem = cluster_problem(refused, HOST) or ""
    assert problem.startswith(f"cannot reach the cluster at {HOST}: Connection refused")
    assert "--kubeconfig and --context" in problem
    assert cluster_problem(ValueError("a bug"), HOST) is None  # not a cluster problem: never disguised as one


def test_check_output_has_the_fields_of_the_cr_status() -> None:
    target = Target(name="agents", namespace="agents", image=IMAGE_A)
    inputs = [
        TargetInput(
            target, parse_image(IMAGE_A), deployment_view(deployment()), [pod_view(pod("p1")), pod_view(pod("p2"))]
        )
    ]
    verdict = decide(inputs, "Auto", None, deadline_passed=False)
    doc = status_document(verdict, started=1_800_000_000.0, completed=1_800_000_004.25, revision="5b72ee1e0123")
    assert RollbackVerificationStatus.model_validate(doc)  # exactly the CR status's schema
    assert (doc["phase"], doc["reason"], doc["detectedBy"]) == ("Succeeded", "Verified", "Manual")
    assert (doc["revision"], doc["shortRevision"]) == ("5b72ee1e0123", "5b72ee1e")
    assert (doc["startedAt"], doc["completedAt"], doc["durationSeconds"]) == (
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:04Z",
        4.2,
    )
    assert doc["targets"][0]["expectedImages"] == {"app": str(parse_image(IMAGE_A))}
    assert {c["type"]: c["status"] for c in doc["conditions"]}["Ready"] == "True"
    assert all(c["lastTransitionTime"] == "2027-01-15T08:00:04Z" for c in doc["conditions"])
    json.dumps(doc)  # plain data


@pytest.mark.parametrize("enabled", [True, False])
def test_the_settings_application_is_reported_missing_only_when_detection_is_on(
    enabled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.model_validate({"detection": {"enabled": enabled}})
    detector = Detector(None, Metrics(), None, settings)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        detector.check_configured([], "argocd")
    said = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    assert said == (
        [
            "detection: Application argocd/agents from the settings does not exist (yet); "
            "rollbacks of it are detected once it appears"
        ]
        if enabled
        else []
    )
