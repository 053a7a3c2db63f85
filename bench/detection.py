"""Benchmarks 3 and 4: detection latency, and the operator's API requests when idle and per rollback.

Argo CD's own Application CRD is installed (from $RV_BIN_DIR, the version pinned in versions.env)
and an Application `agents` is created in `bench-argocd`, its source a local git repository of the
agents values (a real repository, read by the operator with real git). Nothing runs Argo CD: the
bench plays its application controller. For each sync it applies the release with helm (as Argo CD
applies manifests), then writes status.history as Argo CD does (controller/state.go
persistRevisionHistory: a new entry id = last id + 1, revision, deployedAt, deployStartedAt, source,
initiatedBy; the newest 10 kept), with a JSON merge patch of the object's status (the CRD has no
status subresource).

The operator (`rollback-verifier run --namespace bench-detect --settings ...`) watches the
Application. Each iteration is a forward sync to a new commit with new images, then a rollback to
the base revision (the new entry's revision equals an older entry's: ArgoCDHistory):

- detection latency: from the moment the rollback's status patch returns to the moment this
  process receives the ADDED event of `agents-rollback-<id>`; and, from the audit log, server side:
  from the API server completing the patch to it receiving the operator's create;
- the verification then runs to its verdict (timeoutSeconds 30), which must be Succeeded;
- API requests (audit log, the operator's user agents): over an idle window before any sync, per
  rollback (from its patch to 1 s after its verdict was seen), per forward sync, and over a second
  idle window after the last rollback.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from tests.e2e.agents import VALUES_PATH, GitOpsRepo, helm_deploy, images
from tests.e2e.support import Cluster, running_operator

from bench.common import (
    ARGO,
    BENCH_USER_AGENT,
    OPERATOR_USER_AGENTS,
    AuditLog,
    Recorder,
    bench_api,
    breakdown,
    cpu_seconds,
    new_namespace,
    parse_ts,
    summary,
    sync_audit,
)

NAMESPACE = "bench-detect"
ARGOCD_NAMESPACE = "bench-argocd"
APP = "agents"
HISTORY_LIMIT = 10  # Argo CD's default spec.revisionHistoryLimit
TARGETS = ("agents", "agents-controllers")


def release_images(n: int) -> dict[str, Any]:
    """Values pinning release n of both images: a tag and a digest of their own."""
    tag = f"r{n:07d}"
    digest = "sha256:" + hashlib.sha256(f"release-{n}".encode()).hexdigest()
    return {
        "controlPlane": {
            "image": {"repository": "registry.example/lab/jangar-control-plane", "tag": tag, "digest": digest}
        },
        "image": {"repository": "registry.example/lab/jangar", "tag": tag, "digest": digest},
    }


def _now_z(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeArgoCD:
    """Writes the Application's status the way Argo CD's application controller does after a sync."""

    def __init__(self, api: client.ApiClient, repo: GitOpsRepo) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.repo = repo
        self.history: list[dict[str, Any]] = []
        self.next_id = 0
        self.source = {"repoURL": repo.url, "path": "argocd/applications/agents", "targetRevision": "main"}
        self.destination = {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE}

    def create(self) -> None:
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": APP, "namespace": ARGOCD_NAMESPACE},
            "spec": {
                "project": "default",
                "source": self.source,
                "destination": self.destination,
            },
        }
        self.custom.create_namespaced_custom_object(*ARGO[:2], ARGOCD_NAMESPACE, ARGO[2], body)

    def synced(self, revision: str, started: float) -> int:
        """A successful sync of `revision`: append a history entry (newest 10 kept) and write status."""
        entry_id = self.next_id
        self.next_id += 1
        now = time.time()
        self.history.append(
            {
                "id": entry_id,
                "revision": revision,
                "deployedAt": _now_z(now),
                "deployStartedAt": _now_z(started),
                "source": self.source,
                "initiatedBy": {"username": "admin"},
            }
        )
        self.history = self.history[-HISTORY_LIMIT:]
        status = {
            "history": self.history,
            "health": {"status": "Healthy"},
            "sync": {
                "status": "Synced",
                "revision": revision,
                "comparedTo": {"source": self.source, "destination": self.destination},
            },
            "operationState": {
                "operation": {"sync": {"revision": revision}, "initiatedBy": {"username": "admin"}},
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "startedAt": _now_z(started),
                "finishedAt": _now_z(now),
                "syncResult": {"revision": revision, "source": self.source},
            },
            "reconciledAt": _now_z(now),
            "sourceType": "Helm",
        }
        self.custom.patch_namespaced_custom_object(
            *ARGO[:2], ARGOCD_NAMESPACE, ARGO[2], APP, {"status": status}, _request_timeout=30
        )
        return entry_id


def _install_application_crd(cluster: Cluster) -> None:
    crd = Path(os.environ.get("RV_BIN_DIR", "")) / "argocd-application-crd.yaml"
    if not crd.is_file():
        raise RuntimeError(f"{crd} is missing: run tests/e2e/cluster/build-binaries.sh (make tools) first")
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    # Right after creation the CRD has no conditions yet and `kubectl wait` errors out: retry.
    cluster.wait_for(
        lambda: (
            cluster.kubectl(
                "wait", "--for=condition=Established", "crd/applications.argoproj.io", "--timeout=5s", check=False
            ).returncode
            == 0
        ),
        timeout=60,
        what="the Application CRD to be Established",
        interval=0.5,
    )


def _rollout(cluster: Cluster, ns: str) -> None:
    for d in TARGETS:
        cluster.rollout_status(ns, d)


def _requests(audit: AuditLog, start: float, end: float) -> dict[str, Any]:
    reqs = audit.requests(OPERATOR_USER_AGENTS, start, end)
    return {"seconds": round(end - start, 1), "total": len(reqs), "breakdown": breakdown(reqs)}


def _server_side(audit: AuditLog, patch_sent: float, rbv: str) -> float | None:
    """From the audit log: the API server finishing the bench's patch to receiving the operator's create."""
    patch = audit.first(
        lambda e: (
            e.get("stage") == "ResponseComplete"
            and e.get("userAgent", "").startswith(BENCH_USER_AGENT)
            and e.get("verb") == "patch"
            and (e.get("objectRef") or {}).get("resource") == "applications"
        ),
        patch_sent,
    )
    create = audit.first(
        lambda e: (
            e.get("stage") == "RequestReceived"
            and e.get("userAgent", "").startswith(OPERATOR_USER_AGENTS)
            and e.get("verb") == "create"
            and (e.get("objectRef") or {}).get("resource") == "rollbackverifications"
            and (e.get("objectRef") or {}).get("name") in (rbv, None, "")
        ),
        patch_sent,
    )
    if patch is None or create is None:
        return None
    return parse_ts(create["requestReceivedTimestamp"]) - parse_ts(patch["stageTimestamp"])


def run(
    kubeconfig: Path, audit_log: Path | None, workdir: Path, rollbacks: int = 30, idle_seconds: float = 60
) -> dict[str, Any]:
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    audit = AuditLog(audit_log) if audit_log else None
    cluster.install_crd()
    _install_application_crd(cluster)
    new_namespace(cluster, ARGOCD_NAMESPACE)
    ns = new_namespace(cluster, NAMESPACE)

    repo = GitOpsRepo(workdir / "gitops")
    base = repo.commit_values(images("A"), "base release")
    argocd = FakeArgoCD(api, repo)
    argocd.create()
    started = time.time()
    helm_deploy(cluster, ns, repo.values_at(base))
    _rollout(cluster, ns)
    argocd.synced(base, started)

    settings = workdir / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "argocdNamespace": ARGOCD_NAMESPACE,
                "detection": {
                    "enabled": True,
                    "applications": [
                        {
                            "name": APP,
                            "namespace": ARGOCD_NAMESPACE,
                            "verificationNamespace": ns,
                            "valuesFrom": {"git": {"repoURL": repo.url, "path": VALUES_PATH}},
                            "timeoutSeconds": 30,
                        }
                    ],
                },
            }
        )
    )

    samples: list[dict[str, Any]] = []
    forwards: list[list[float]] = []
    result: dict[str, Any] = {"rollbacks": rollbacks}
    recorder = Recorder(api, ns, applications_namespace=ARGOCD_NAMESPACE).start()
    op_started = time.time()
    try:
        with running_operator(cluster, [ns], workdir / "operator", settings=settings) as op:
            pid = op.process.pid
            ready_at = time.time()  # /readyz answered
            time.sleep(5)  # start-up: lists, watches, the first judgement of the existing history
            idle_start, cpu0 = time.time(), cpu_seconds(pid)
            time.sleep(idle_seconds)
            idle_end, cpu1 = time.time(), cpu_seconds(pid)
            result["idle_cpu_seconds"] = round(cpu1 - cpu0, 3)

            for k in range(rollbacks):
                # A forward sync to a new commit with new images.
                rev = repo.commit_values(release_images(k), f"release {k}")
                fwd_started = time.time()
                helm_deploy(cluster, ns, repo.values_at(rev))
                _rollout(cluster, ns)
                argocd.synced(rev, fwd_started)
                fwd_patched = time.time()
                time.sleep(2)  # the detector judges the new entry (git ancestry and contents): not a rollback

                # The rollback: Argo CD applies the base release, then records the sync.
                rb_started = time.time()
                mark = recorder.mark()
                helm_deploy(cluster, ns, repo.values_at(base))
                forwards.append([fwd_patched, rb_started])
                patch_sent = time.time()
                entry_id = argocd.synced(base, rb_started)
                t_patched = time.monotonic()
                name = f"{APP}-rollback-{entry_id}"
                app_seen = recorder.wait_for(
                    lambda e, i=entry_id: (
                        e.kind == "application"
                        and any(h.get("id") == i for h in (e.obj.get("status") or {}).get("history") or ())
                    ),
                    timeout=30,
                    what=f"history entry {entry_id} in the bench's own watch",
                    since=mark,
                )
                added = recorder.wait_for(
                    lambda e, n=name: e.kind == "rbv" and e.name == n,
                    timeout=30,
                    what=f"the creation of {name}",
                    since=mark,
                )
                verdict = recorder.wait_verdict(name, since=mark)
                status = verdict.obj["status"]
                if status["phase"] != "Succeeded":
                    raise RuntimeError(f"{name}: {status['phase']}/{status.get('reason')}: {status.get('message')}")
                time.sleep(1)
                samples.append(
                    {
                        "iteration": k,
                        "history_id": entry_id,
                        "detected_by": status.get("detectedBy"),
                        "patch_to_created_seen": added.t - t_patched,
                        "bench_watch_delivery": app_seen.t - t_patched,
                        "created_to_verdict_seen": verdict.t - added.t,
                        "patch_sent": patch_sent,
                        "window": [patch_sent, verdict.wall + 1.0],
                    }
                )
            after_start = time.time()
            time.sleep(idle_seconds / 2)
            after_end = time.time()
            metrics_text = op.metrics()
    finally:
        recorder.stop()

    result["samples"] = samples
    result["detected_total"] = [
        line for line in metrics_text.splitlines() if line.startswith("rollback_verification_detected_total")
    ]
    result["summary"] = {
        key: summary([s[key] for s in samples])
        for key in ("patch_to_created_seen", "bench_watch_delivery", "created_to_verdict_seen")
    }
    if audit is not None:
        sync_audit(audit, api)
        for s in samples:
            s["server_patch_to_create"] = _server_side(audit, s["patch_sent"], f"{APP}-rollback-{s['history_id']}")
            s["operator_requests"] = len(audit.requests(OPERATOR_USER_AGENTS, *s["window"]))
        server = [s["server_patch_to_create"] for s in samples if s["server_patch_to_create"] is not None]
        result["summary"]["server_patch_to_create"] = summary(server)
        per_rollback = [audit.requests(OPERATOR_USER_AGENTS, *s["window"]) for s in samples]
        per_forward = [audit.requests(OPERATOR_USER_AGENTS, *w) for w in forwards]
        result["api_requests"] = {
            "startup": _requests(audit, op_started, idle_start),
            "idle_before": _requests(audit, idle_start, idle_end),
            "idle_after": _requests(audit, after_start, after_end),
            "per_rollback": {
                "summary": summary([float(len(r)) for r in per_rollback]),
                "breakdown_total": breakdown(r for rs in per_rollback for r in rs),
                "window": "from the rollback's status patch to 1 s after the verdict was seen",
            },
            "per_forward_sync": {
                "summary": summary([float(len(r)) for r in per_forward]),
                "breakdown_total": breakdown(r for rs in per_forward for r in rs),
                "window": "from the forward sync's status patch to the start of the rollback",
            },
            "whole_run": _requests(audit, idle_start, after_end),
            # /readyz answers from kopf's startup handler: how long after it the operator's watches opened.
            "watches_opened_after_readyz": [
                [round(r.received - ready_at, 3), r.resource]
                for r in audit.requests(OPERATOR_USER_AGENTS, op_started, idle_start)
                if r.verb == "watch"
            ],
            # When the operator (re)opened its watches, in seconds since it was started: the
            # watches end server-side after 270 s (kopf's and the Application watcher's setting).
            "watch_requests": [
                [round(r.received - op_started, 1), r.resource]
                for r in audit.requests(OPERATOR_USER_AGENTS, op_started, after_end)
                if r.verb == "watch"
            ],
        }
    cluster.kubectl("delete", "namespace", ns, ARGOCD_NAMESPACE, "--wait=false", check=False)
    return result
