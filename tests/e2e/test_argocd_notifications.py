"""Argo CD Notifications proven by the real notifications controller.

argocd-notifications-cm carries the shipped snippet (deploy/argocd/argocd-notifications-cm-snippet.yaml)
plus a webhook service pointed at a loopback HTTP receiver this test runs; the Application subscribes to
the snippet's trigger. A real sync whose PostSync hook verification fails (ImageMismatch, as in
test_argocd_hooks.py) must make the real controller POST the snippet's webhook body: the Application,
the revision, the verification and its "<reason>: <message>" naming the failing target.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from harness.agents import expected, images
from harness.argocd import ArgoCD
from harness.monitoring import webhook_receiver
from harness.support import ROOT, Cluster, running_operator

from tests.e2e.test_argocd_hooks import HOOK, hooked_chart

SNIPPET = ROOT / "deploy" / "argocd" / "argocd-notifications-cm-snippet.yaml"
SERVICE = "rollback-verifier"  # the webhook name the snippet's template has a body for
TRIGGER = "on-rollback-verification-failed"
DELIVERY_TIMEOUT = 120.0  # seconds from the failed sync to the webhook call


def test_a_failed_hook_verification_notifies_through_the_real_controller(
    cluster: Cluster, argocd: ArgoCD, namespace: str, tmp_path: Path
) -> None:
    app, repo, settings = hooked_chart(cluster, argocd, namespace, tmp_path, "notify")
    with webhook_receiver() as (url, received):
        data = yaml.safe_load(SNIPPET.read_text())["data"]
        argocd.configure_notifications({**data, f"service.webhook.{SERVICE}": yaml.safe_dump({"url": url})})
        argocd.start_notifications()
        # An override the GitOps values do not carry: the controllers run C, the values say A, so the
        # PostSync hook verification fails with ImageMismatch and with it the sync.
        argocd.create_application(app, repo, namespace, helm_values={"controllers": {"image": images("C")["image"]}})
        cluster.kubectl(
            "-n", argocd.namespace, "annotate", "applications.argoproj.io", app,
            f"notifications.argoproj.io/subscribe.{TRIGGER}.{SERVICE}=",
        )  # fmt: skip
        try:
            with running_operator(cluster, [namespace], tmp_path / "op", settings=settings):
                rev_a = repo.commit_values(images("A"), "release A")
                proc, failed = argocd.try_sync(app, rev_a)
                assert proc.returncode != 0
                assert failed["status"]["operationState"]["phase"] == "Failed", failed["status"]["operationState"]
                rbv = cluster.get("-n", namespace, "rbv", HOOK)
                assert (rbv["status"]["phase"], rbv["status"]["reason"]) == ("Failed", "ImageMismatch")
                try:
                    cluster.wait_for(lambda: received.payloads, DELIVERY_TIMEOUT, "the webhook call", interval=0.5)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; Argo CD logs:\n{argocd.logs_tail()}") from None
        finally:
            argocd.delete_application(app)
    [message] = received.payloads  # oncePer the revision: the controller's repeats are "already sent"
    assert message["application"] == app
    assert message["namespace"] == argocd.namespace
    assert message["revision"] == rev_a
    assert message["operationPhase"] == "Failed"
    [verification] = message["verifications"]
    assert (verification["namespace"], verification["name"], verification["hookPhase"]) == (
        namespace,
        HOOK,
        "Failed",
    )
    assert verification["message"] == f"ImageMismatch: {rbv['status']['message']}"
    assert expected("C") in verification["message"], "the failing target's image"
