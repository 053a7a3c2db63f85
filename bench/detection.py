"""Benchmarks 3 and 4: detection latency on real Argo CD rollbacks, verdict vs Argo CD's own health,
and the operator's API requests when idle and per rollback.

Real Argo CD (harness/argocd.py: repo-server, application controller, API server and redis as host
processes, the version pinned in versions.env) runs an Application `agents` in `argocd`, its source a
local git repository (file://) holding the fixture agents chart and values. The operator
(`rollback-verifier run --namespace bench-detect --settings ...`) watches it. Each iteration:

- a forward sync: a new commit with new images, `argocd app sync agents --revision <it>` (not a
  rollback; the detector still judges it: git ancestry, then contents);
- a rollback: `argocd app rollback agents` (to the entry before the newest: the base release). Argo
  CD's controller syncs it and writes the new history entry (ArgoCDHistory).

Measured per rollback, all from this process's own watch of the Application and the verifications
(receive times, time.monotonic()):

- detection latency: the Application event that first shows the new history entry -> the ADDED event
  of `agents-rollback-<id>`; and, from the audit log, server side: the API server completing the
  application controller's write of that entry -> receiving the operator's create;
- command -> verdict (which must be Succeeded) and command -> Argo CD reporting the Application
  Healthy after the operation (operation finished, `reconciledAt` not older than it, the base images
  in `summary.images`): the verdict should follow Argo CD's own health closely;
- API requests (audit log, the operator's user agents): over an idle window before any sync, per
  rollback (from the command to 1 s after its verdict was seen), per forward sync, and over a second
  idle window after the last rollback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from harness.agents import VALUES_PATH, GitOpsRepo, images, release_images
from harness.argocd import ArgoCD
from harness.support import Cluster, running_operator

from bench.common import (
    BENCH_USER_AGENT,
    OPERATOR_USER_AGENTS,
    AuditLog,
    Event,
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
APP = "agents"
ARGOCD_CONTROLLER_USER_AGENT = "argocd-application-controller"


def _image_list(values: dict[str, Any]) -> list[str]:
    """The images the chart renders for these values, as Argo CD lists them in status.summary.images."""
    out = []
    for image in (values["controlPlane"]["image"], values["image"]):
        out.append(f"{image['repository']}:{image['tag']}@{image['digest']}")
    return sorted(out)


def _argocd_healthy(app: dict[str, Any], revision: str, want_images: list[str], after: float) -> bool:
    """Argo CD reports the Application Healthy after an operation to `revision` that finished after
    `after` (wall clock, second granularity): the controller compared it since, on the synced images."""
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    if app.get("operation") or op.get("phase") != "Succeeded":
        return False
    if (op.get("syncResult") or {}).get("revision") != revision:
        return False
    finished = parse_ts(op["finishedAt"]) if op.get("finishedAt") else 0.0
    if finished < int(after) or parse_ts(status.get("reconciledAt") or "1970-01-01T00:00:00Z") < finished:
        return False
    if sorted((status.get("summary") or {}).get("images") or []) != want_images:
        return False
    return bool((status.get("health") or {}).get("status") == "Healthy")


def _requests(audit: AuditLog, start: float, end: float) -> dict[str, Any]:
    reqs = audit.requests(OPERATOR_USER_AGENTS, start, end)
    return {"seconds": round(end - start, 1), "total": len(reqs), "breakdown": breakdown(reqs)}


def _server_side(audit: AuditLog, since: float, rbv: str) -> float | None:
    """From the audit log: the API server finishing Argo CD's controller write of the Application
    (the last one before the operator's create) -> receiving the operator's create."""
    create = audit.first(
        lambda e: (
            e.get("stage") == "RequestReceived"
            and e.get("userAgent", "").startswith(OPERATOR_USER_AGENTS)
            and e.get("verb") == "create"
            and (e.get("objectRef") or {}).get("resource") == "rollbackverifications"
            and (e.get("objectRef") or {}).get("name") in (rbv, None, "")
        ),
        since,
    )
    if create is None:
        return None
    created = parse_ts(create["requestReceivedTimestamp"])
    writes = [
        parse_ts(e["stageTimestamp"])
        for e in audit.records
        if e.get("stage") == "ResponseComplete"
        and parse_ts(e["stageTimestamp"]) >= since
        and e.get("userAgent", "").startswith(ARGOCD_CONTROLLER_USER_AGENT)
        and e.get("verb") in ("patch", "update")
        and (e.get("objectRef") or {}).get("resource") == "applications"
        and parse_ts(e["stageTimestamp"]) <= created
    ]
    return created - max(writes) if writes else None


def _has_entry(ev: Event, entry_id: int) -> bool:
    return ev.kind == "application" and any(
        h.get("id") == entry_id for h in (ev.obj.get("status") or {}).get("history") or ()
    )


def run(
    kubeconfig: Path, audit_log: Path | None, workdir: Path, rollbacks: int = 30, idle_seconds: float = 60
) -> dict[str, Any]:
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    user_agents = (*OPERATOR_USER_AGENTS, BENCH_USER_AGENT, ARGOCD_CONTROLLER_USER_AGENT)
    audit = AuditLog(audit_log, user_agents) if audit_log else None
    cluster.install_crd()
    ns = new_namespace(cluster, NAMESPACE)
    repo = GitOpsRepo(workdir / "gitops")
    repo.seed_chart()
    base_values = images("A")
    base = repo.commit_values(base_values, "base release")
    base_images = _image_list(base_values)

    settings = workdir / "settings.yaml"
    argocd = ArgoCD(cluster, workdir / "argocd")
    settings.write_text(
        yaml.safe_dump(
            {
                "argocdNamespace": argocd.namespace,
                "detection": {
                    "enabled": True,
                    "applications": [
                        {
                            "name": APP,
                            "namespace": argocd.namespace,
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
    with argocd:
        argocd.delete_application(APP)  # a previous run's, on a kept cluster
        argocd.cluster.wait_for(
            lambda: (
                cluster.kubectl("-n", argocd.namespace, "get", "applications.argoproj.io", APP, check=False).returncode
                != 0
            ),
            timeout=30,
            what="the previous run's Application to be gone",
        )
        argocd.create_application(APP, repo, ns)
        argocd.sync(APP, base)
        recorder = Recorder(api, ns, applications_namespace=argocd.namespace).start()
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
                    rev = repo.commit_values(release_images(k), f"release {k}")
                    fwd_started = time.time()
                    argocd.sync(APP, rev)
                    forwards.append([fwd_started, time.time()])

                    mark = recorder.mark()
                    entry_id = int(argocd.history(APP)[-1]["id"]) + 1
                    name = f"{APP}-rollback-{entry_id}"
                    cmd_wall, cmd_t = time.time(), time.monotonic()
                    argocd.cli("app", "rollback", APP, "--timeout", "120")
                    cmd_done = time.monotonic()
                    seen = recorder.wait_for(
                        lambda e, i=entry_id: _has_entry(e, i), 60, f"history entry {entry_id}", since=mark
                    )
                    added = recorder.wait_for(
                        lambda e, n=name: e.kind == "rbv" and e.name == n, 60, f"the creation of {name}", since=mark
                    )
                    healthy = recorder.wait_for(
                        lambda e, after=cmd_wall: (
                            e.kind == "application" and _argocd_healthy(e.obj, base, base_images, after)
                        ),
                        60,
                        "Argo CD to report the Application Healthy after the rollback",
                        since=mark,
                    )
                    verdict = recorder.wait_verdict(name, since=mark)
                    status = verdict.obj["status"]
                    if status["phase"] != "Succeeded":
                        raise RuntimeError(f"{name}: {status['phase']}/{status.get('reason')}: {status.get('message')}")
                    argocd.settle(APP, history_length=None)
                    time.sleep(1)
                    samples.append(
                        {
                            "iteration": k,
                            "history_id": entry_id,
                            "detected_by": status.get("detectedBy"),
                            "history_seen_to_created_seen": added.t - seen.t,
                            "command_to_history_seen": seen.t - cmd_t,
                            "command_to_cli_exit": cmd_done - cmd_t,
                            "command_to_argocd_healthy": healthy.t - cmd_t,
                            "command_to_verdict_seen": verdict.t - cmd_t,
                            "verdict_after_argocd_healthy": verdict.t - healthy.t,
                            "command_wall": cmd_wall,
                            "window": [cmd_wall, verdict.wall + 1.0],
                        }
                    )
                after_start = time.time()
                time.sleep(idle_seconds / 2)
                after_end = time.time()
                metrics_text = op.metrics()
        finally:
            recorder.stop()
        argocd.delete_application(APP)

    result["samples"] = samples
    result["detected_total"] = [
        line for line in metrics_text.splitlines() if line.startswith("rollback_verification_detected_total")
    ]
    keys = (
        "history_seen_to_created_seen",
        "command_to_history_seen",
        "command_to_cli_exit",
        "command_to_argocd_healthy",
        "command_to_verdict_seen",
        "verdict_after_argocd_healthy",
    )
    result["summary"] = {key: summary([s[key] for s in samples]) for key in keys}
    ratios = [s["command_to_verdict_seen"] / s["command_to_argocd_healthy"] for s in samples]
    result["summary"]["verdict_to_healthy_ratio"] = summary(ratios)
    if audit is not None:
        sync_audit(audit, api)
        for s in samples:
            s["server_history_write_to_create"] = _server_side(
                audit, s["command_wall"], f"{APP}-rollback-{s['history_id']}"
            )
            s["operator_requests"] = len(audit.requests(OPERATOR_USER_AGENTS, *s["window"]))
        server = [
            s["server_history_write_to_create"] for s in samples if s["server_history_write_to_create"] is not None
        ]
        result["summary"]["server_history_write_to_create"] = summary(server)
        per_rollback = [audit.requests(OPERATOR_USER_AGENTS, *s["window"]) for s in samples]
        per_forward = [audit.requests(OPERATOR_USER_AGENTS, *w) for w in forwards]
        result["api_requests"] = {
            "startup": _requests(audit, op_started, idle_start),
            "idle_before": _requests(audit, idle_start, idle_end),
            "idle_after": _requests(audit, after_start, after_end),
            "per_rollback": {
                "summary": summary([float(len(r)) for r in per_rollback]),
                "breakdown_total": breakdown(r for rs in per_rollback for r in rs),
                "window": "from the rollback command to 1 s after the verdict was seen",
            },
            "per_forward_sync": {
                "summary": summary([float(len(r)) for r in per_forward]),
                "breakdown_total": breakdown(r for rs in per_forward for r in rs),
                "window": "the forward sync command, until it settled",
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
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return result
