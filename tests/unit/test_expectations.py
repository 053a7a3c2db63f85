"""Which image each target must run, from explicit images or from an Application's history values."""

from __future__ import annotations

import pytest

from rollback_verifier.api.models import Reason, RollbackVerificationSpec, parse_spec
from rollback_verifier.values.expectations import ExpectationError, deployed_revision, resolve_expectations
from tests.unit.factories import DIGEST_A, DIGEST_B

HELM_VALUES_A = f"""
controlPlane: {{image: {{repository: reg/cp, tag: aaa, digest: "{DIGEST_A}"}}}}
image: {{repository: reg/jangar, tag: aaa, digest: "{DIGEST_A}"}}
"""
HELM_VALUES_B = HELM_VALUES_A.replace("aaa", "bbb").replace(DIGEST_A, DIGEST_B)


def application(**status: object) -> dict:
    history = [
        {"id": 0, "revision": "rev-a", "source": {"repoURL": "file:///g", "helm": {"values": HELM_VALUES_A}}},
        {"id": 1, "revision": "rev-b", "source": {"repoURL": "file:///g", "helm": {"values": HELM_VALUES_B}}},
    ]
    return {"spec": {"source": {"repoURL": "file:///g"}}, "status": {"history": history, **status}}


def resolve(spec: dict, app: dict | None = None, **kwargs: object):
    parsed: RollbackVerificationSpec = parse_spec(spec)
    return resolve_expectations(
        parsed, parsed.effective_targets("agents"), application=app, reader=None, read_secret=None, **kwargs
    )


def test_explicit_images_need_no_values() -> None:
    got = resolve({"targets": [{"name": "web", "image": f"reg/web:1@{DIGEST_A}"}]})
    assert got.images[("agents", "web")].familiar() == f"reg/web:1@{DIGEST_A}"


def test_history_helm_values_at_the_requested_revision() -> None:
    spec = {"application": {"name": "agents"}, "revision": "rev-a", "valuesFrom": {"applicationHelmValues": True}}
    got = resolve(spec, application())
    assert got.images[("agents", "agents")].familiar() == f"reg/cp:aaa@{DIGEST_A}"
    assert got.images[("agents", "agents-controllers")].familiar() == f"reg/jangar:aaa@{DIGEST_A}"
    assert got.revision == "rev-a"


def test_without_a_revision_the_last_deployed_entry_is_used() -> None:
    got = resolve({"application": {"name": "agents"}}, application())  # valuesFrom defaults to the history values
    assert got.revision == "rev-b"
    assert got.images[("agents", "agents")].tag == "bbb"


def test_a_post_sync_hook_reads_the_running_operations_revision() -> None:
    app = application(operationState={"phase": "Running", "syncResult": {"revision": "rev-a"}})
    assert deployed_revision(app) == "rev-b"
    assert deployed_revision(app, during_sync=True) == "rev-a"
    assert resolve({"application": {"name": "agents"}}, app, during_sync=True).revision == "rev-a"


@pytest.mark.parametrize(
    ("spec", "app", "reason", "words"),
    [
        ({"targets": [{"name": "web", "imageValues": ["image"]}]}, None, Reason.INVALID_SPEC, "neither valuesFrom"),
        ({"application": {"name": "agents"}}, None, Reason.VALUES_UNAVAILABLE, "no sync history"),
        (
            {"application": {"name": "agents"}, "revision": "nope"},
            application(),
            Reason.VALUES_UNAVAILABLE,
            "no history entry for revision nope",
        ),
        (
            {"application": {"name": "agents"}, "valuesFrom": {"git": {"path": "v.yaml"}}},
            {"spec": {"sources": [{"repoURL": "a"}, {"repoURL": "b"}]}},
            Reason.VALUES_UNAVAILABLE,
            "multiple sources",
        ),
        (
            {"valuesFrom": {"git": {"path": "v.yaml"}}, "application": {"name": "agents"}},
            None,
            Reason.VALUES_UNAVAILABLE,
            "was not found",
        ),
        (
            {"application": {"name": "agents"}, "targets": [{"name": "x", "imageValues": ["missing.image"]}]},
            application(),
            Reason.VALUES_UNAVAILABLE,
            "missing.image",
        ),
        ({"targets": [{"name": "web", "image": "NOT/an image"}]}, None, Reason.INVALID_SPEC, "target web"),
    ],
)
def test_what_cannot_be_resolved_says_why(spec: dict, app: dict | None, reason: Reason, words: str) -> None:
    with pytest.raises(ExpectationError) as caught:
        resolve(spec, app)
    assert caught.value.reason == reason
    assert words in caught.value.message
