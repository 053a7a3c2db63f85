"""deploy/argocd/argocd-notifications-cm-snippet.yaml, evaluated, rendered and sent by the real argocd.

`argocd admin notifications` runs Argo CD's own notifications engine (the code of the
argocd-notifications controller) on an Application given as a file: it evaluates the trigger's
`when`, renders the template and delivers it through the webhook service to a loopback receiver.
The Application's status is written here in the shape Argo CD gives a sync whose PostSync hook
failed. Not covered: a sync failed by a real Argo CD controller and the notifications controller
reacting to it on its own (that needs the real Argo CD e2e harness).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.monitoring import webhook_receiver
from harness.support import ROOT, Cluster

SNIPPET = ROOT / "deploy" / "argocd" / "argocd-notifications-cm-snippet.yaml"
TRIGGER, TEMPLATE = "on-rollback-verification-failed", "rollback-verification-failed"
REVISION = "4c2b1f0e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"
FAILED_MESSAGE = (
    "ImageMismatch: agents-controllers: container controllers runs registry.example/lab/jangar:bbbbbbbb, "
    "expected registry.example/lab/jangar:aaaaaaaa@sha256:aaaa"
)


def application(name: str, namespace: str, hook_phase: str, operation_phase: str) -> dict[str, Any]:
    deployment = {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
        "namespace": "agents",
        "name": "agents-controllers",
        "status": "Synced",
        "message": "deployment.apps/agents-controllers serverside-applied",
        "hookPhase": "Running",
        "syncPhase": "Sync",
    }
    hook = {
        "group": "gitops.proompteng.ai",
        "version": "v1alpha1",
        "kind": "RollbackVerification",
        "namespace": "agents",
        "name": "agents-postsync",
        "status": "Synced",
        "hookType": "PostSync",
        "hookPhase": hook_phase,
        "syncPhase": "PostSync",
        "message": FAILED_MESSAGE if hook_phase == "Failed" else "2/2 Deployments run the reverted images",
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "agents"},
            "source": {"repoURL": "https://git.example/gitops.git", "path": "agents", "targetRevision": "main"},
        },
        "status": {
            "operationState": {
                "phase": operation_phase,
                "message": "one or more synchronization tasks completed unsuccessfully"
                if operation_phase == "Failed"
                else "successfully synced (all tasks run)",
                "startedAt": "2026-12-02T06:00:00Z",
                "finishedAt": "2026-12-02T06:01:00Z",
                "operation": {"sync": {"revision": REVISION}},
                "syncResult": {"revision": REVISION, "resources": [deployment, hook]},
            }
        },
    }


def notifications_cm(tmp: Path, webhook_url: str) -> Path:
    snippet = yaml.safe_load(SNIPPET.read_text())
    data = {
        **snippet["data"],
        "service.webhook.rollback-verifier": yaml.safe_dump(
            {"url": webhook_url, "headers": [{"name": "Content-Type", "value": "application/json"}]}
        ),
        "context": yaml.safe_dump({"argocdUrl": "https://argocd.example"}),
    }
    path = tmp / "argocd-notifications-cm.yaml"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-notifications-cm"}, "data": data}
    path.write_text(yaml.safe_dump(cm))
    return path


NO_CLUSTER = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: argocd}}]
current-context: none
"""


def admin(argocd_bin: str, tmp: Path, webhook_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`argocd admin notifications ARGS` with the snippet's ConfigMap and an empty Secret as files. Every
    input is a file, so no API server is contacted; the command still wants a kubeconfig to exist."""
    cm = notifications_cm(tmp, webhook_url)
    secret = tmp / "argocd-notifications-secret.yaml"
    secret.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-notifications-secret"}})
    )
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(NO_CLUSTER)
    cmd = [argocd_bin, "admin", "notifications", *args, "--config-map", str(cm), "--secret", str(secret)]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=60, check=False)


def app_file(tmp: Path, name: str, hook_phase: str, operation_phase: str) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(application(name, "argocd", hook_phase, operation_phase)))
    return f"./{path.name}"


def test_the_snippet_is_one_trigger_and_its_template():
    data = yaml.safe_load(SNIPPET.read_text())["data"]
    assert set(data) == {f"trigger.{TRIGGER}", f"template.{TEMPLATE}"}
    (condition,) = yaml.safe_load(data[f"trigger.{TRIGGER}"])
    assert condition["send"] == [TEMPLATE]
    assert condition["oncePer"] == "app.status.operationState?.syncResult?.revision"  # one message per revision
    assert {"message", "webhook"} <= set(yaml.safe_load(data[f"template.{TEMPLATE}"]))


@pytest.mark.parametrize(
    ("hook", "operation", "fires"),
    [
        ("Failed", "Failed", True),
        ("Error", "Error", True),
        ("Succeeded", "Succeeded", False),
        ("Running", "Running", False),
    ],
)
def test_the_trigger_fires_for_a_failed_hook_verification_only(argocd_bin, tmp_path, hook, operation, fires):
    app = app_file(tmp_path, "agents", hook, operation)
    proc = admin(argocd_bin, tmp_path, "http://127.0.0.1:9/unused", "trigger", "run", TRIGGER, app)
    assert proc.returncode == 0 and proc.stdout, proc.stdout + proc.stderr
    result = proc.stdout.strip().splitlines()[-1].split()[-1]
    assert result == ("true" if fires else "false"), proc.stdout


def test_the_template_reaches_a_webhook_naming_application_revision_reason_and_target(argocd_bin, tmp_path):
    app = app_file(tmp_path, "agents", "Failed", "Failed")
    with webhook_receiver() as (url, received):
        # The webhook service `rollback-verifier` (service.webhook.rollback-verifier) takes no recipient.
        recipient = ("--recipient", "rollback-verifier:")
        proc = admin(argocd_bin, tmp_path, url, "template", "notify", TEMPLATE, app, *recipient)
        assert proc.returncode == 0 and "failed to notify" not in proc.stderr, proc.stdout + proc.stderr
        (payload,) = Cluster.wait_for(lambda: list(received.payloads), 30, "the notification at the webhook")
    assert payload == {
        "application": "agents",
        "namespace": "argocd",
        "revision": REVISION,
        "operationPhase": "Failed",
        "verifications": [
            {"namespace": "agents", "name": "agents-postsync", "hookPhase": "Failed", "message": FAILED_MESSAGE}
        ],
    }
    console = admin(argocd_bin, tmp_path, url, "template", "notify", TEMPLATE, app)
    assert console.returncode == 0, console.stderr
    assert f"Rollback of agents did not land: the sync to revision {REVISION}" in console.stdout
    assert f"agents/agents-postsync: {FAILED_MESSAGE}" in console.stdout
