"""`kubectl rbv`'s pure parts: the list table, describe's text, the manifest of a verification made again."""

from __future__ import annotations

from rollback_verifier.cli.kubectl_plugin import AGAIN_ANNOTATION, again_manifest, describe_text, list_table

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z

OLD = {
    "metadata": {
        "name": "agents-rollback-42",
        "namespace": "agents",
        "creationTimestamp": "2027-01-15T07:58:00Z",
        "resourceVersion": "1234",
        "uid": "u-1",
        "labels": {"gitops.proompteng.ai/application": "agents", "gitops.proompteng.ai/detected-by": "ArgoCDHistory"},
    },
    "spec": {"application": {"name": "agents", "namespace": "argocd"}, "revision": "5b72ee1e" + "0" * 32},
    "status": {
        "phase": "Failed",
        "reason": "ImageMismatch",
        "message": "agents-controllers: pod template runs x:b in controllers, expected x:a",
        "shortRevision": "5b72ee1e",
        "detectedBy": "ArgoCDHistory",
        "durationSeconds": 600.1,
        "targets": [
            {
                "name": "agents-controllers",
                "namespace": "agents",
                "expectedImages": {"controllers": "registry.example/lab/jangar:a@sha256:aaa"},
                "observedImages": {"controllers": ["registry.example/lab/jangar@sha256:bbb"]},
                "replicas": 2,
                "availableReplicas": 2,
                "message": "agents-controllers: pod template runs x:b in controllers, expected x:a",
            }
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "ImageMismatch",
                "lastTransitionTime": "2027-01-15T08:00:00Z",
            }
        ],
    },
}


def test_list_shows_the_verdict_columns_oldest_first() -> None:
    newer = {"metadata": {"name": "b-manual", "namespace": "agents", "creationTimestamp": "2027-01-15T07:59:30Z"}}
    lines = list_table([newer, OLD], NOW, with_namespace=True).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "APPLICATION", "REVISION", "PHASE", "REASON", "AGE"]
    assert lines[1].split() == ["agents", "agents-rollback-42", "agents", "5b72ee1e", "Failed", "ImageMismatch", "2m"]
    assert lines[2].split() == ["agents", "b-manual", "-", "-", "Pending", "-", "30s"]


def test_describe_shows_targets_expected_against_running_and_the_conditions() -> None:
    events = [{"type": "Warning", "reason": "ImageMismatch", "lastTimestamp": "2027-01-15T08:00:00Z", "message": "m"}]
    text = describe_text(OLD, events)
    assert "Phase:        Failed (ImageMismatch)" in text
    assert "Application:  argocd/agents" in text
    target_row = next(line for line in text.splitlines() if line.strip().startswith("agents/agents-controllers"))
    assert target_row.split()[1:5] == [
        "2/2",
        "controllers",
        "registry.example/lab/jangar:a@sha256:aaa",
        "registry.example/lab/jangar@sha256:bbb",
    ]
    assert any(line.split()[:3] == ["Ready", "False", "ImageMismatch"] for line in text.splitlines())
    assert any(line.split()[:2] == ["Warning", "ImageMismatch"] for line in text.splitlines())


def test_describe_of_a_verification_not_started() -> None:
    text = describe_text({"metadata": {"name": "x", "namespace": "agents"}, "spec": {}}, [])
    assert "Phase:        Pending" in text and "none evaluated yet (the default agents Deployments)" in text


def test_verify_again_copies_the_spec_only_and_says_where_it_came_from() -> None:
    manifest = again_manifest(OLD)
    assert manifest["spec"] == OLD["spec"]
    meta = manifest["metadata"]
    assert meta["generateName"] == "agents-rollback-42-again-" and meta["namespace"] == "agents"
    assert meta["labels"] == {"gitops.proompteng.ai/application": "agents"}  # not detected-by: this one is Manual
    assert meta["annotations"] == {AGAIN_ANNOTATION: "agents-rollback-42"}
    assert "status" not in manifest and "resourceVersion" not in meta and "uid" not in meta
