"""Benchmark 1: verdict latency, side by side with `kubectl rollout status` on the same rollouts.

One operator (`rollback-verifier run --namespace bench-latency`, a host process) and the fixture
agents chart, released at images A (helm revision 1) and B (revision 2). Each iteration rolls back
to the other release (A -> B -> A ...):

1. a RollbackVerification (git values at the target's revision) is created first, and the bench
   waits until it is Running and waiting for the rollouts;
2. both Deployments are paused and `helm rollback agents` (to the previous revision, which holds
   the other release) applies its manifests: the pod templates change, nothing rolls out yet;
3. `kubectl rollout status deployment/agents` and `.../agents-controllers` start, and the bench
   waits until each prints its first "Waiting for ..." line (started before the change, kubectl
   would see the complete old rollout and exit at once; started after an unpaused change, it races
   the rollout, which takes about a second on KWOK);
4. `kubectl rollout resume` of both Deployments starts the rollouts.

The bench's own watches (Pods, Deployments, RollbackVerifications) time-stamp every event when this
process receives it:
- t_pods_ready: the last pod of the last target seen Ready (for each target, the first moment its
  non-terminating pods running the new template's images are Ready and as many as spec.replicas);
- t_complete: the last target's Deployment status seen complete by kubectl's rule;
- t_verdict: the RollbackVerification seen with phase Succeeded;
- t_kubectl: the later of the two `kubectl rollout status` "successfully rolled out" lines.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agents import GitOpsRepo, git_values_spec, helm_deploy, images, verification
from harness.support import Cluster, running_operator

from bench.common import (
    OPERATOR_USER_AGENTS,
    PLURAL,
    AuditLog,
    Event,
    Recorder,
    bench_api,
    breakdown,
    histogram,
    new_namespace,
    parse_ts,
    replay,
    summary,
    sync_audit,
)
from rollback_verifier.tools import find_tool

NAMESPACE = "bench-latency"
TARGETS = ("agents", "agents-controllers")


@dataclass
class KubectlWatch:
    """`kubectl rollout status` as a subprocess; the receive time of each output line."""

    cluster: Cluster
    namespace: str
    deployment: str
    lines: list[tuple[float, str]] = field(default_factory=list)
    exited: float | None = None
    _first: threading.Event = field(default_factory=threading.Event)

    def start(self) -> KubectlWatch:
        self.proc = subprocess.Popen(
            [
                find_tool("kubectl"),
                *("-n", self.namespace, "rollout", "status", f"deployment/{self.deployment}", "--timeout=120s"),
            ],
            env=self.cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))
            self._first.set()
        self.proc.wait()
        self.exited = time.monotonic()
        self._first.set()

    def wait_first_line(self, timeout: float) -> str:
        if not self._first.wait(timeout):
            raise TimeoutError(f"kubectl rollout status {self.deployment} printed nothing in {timeout}s")
        return self.lines[0][1] if self.lines else "(exited without output)"

    def done(self, timeout: float) -> float:
        self._reader.join(timeout)
        if self.exited is None:
            self.proc.kill()
            raise TimeoutError(f"kubectl rollout status {self.deployment} did not finish in {timeout}s")
        if self.proc.returncode != 0:
            raise RuntimeError(f"kubectl rollout status {self.deployment} failed: {self.lines}")
        success = [t for t, line in self.lines if "successfully rolled out" in line]
        return success[-1] if success else self.exited

    def kill(self) -> None:
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.kill()


def _template_images(d: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["image"] for c in d["spec"]["template"]["spec"]["containers"]}


def _complete(d: dict[str, Any]) -> bool:
    """kubectl's rollout rule (kubectl/pkg/polymorphichelpers/rollout_status.go), on a Deployment dict."""
    st, spec = d.get("status") or {}, d["spec"]
    if (st.get("observedGeneration") or 0) < d["metadata"]["generation"]:
        return False
    want = spec.get("replicas", 1)
    updated = st.get("updatedReplicas") or 0
    return updated >= want and (st.get("replicas") or 0) <= updated and (st.get("availableReplicas") or 0) >= updated


def _pod_ready(p: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or ()
    )


def _owner_deployment(p: dict[str, Any]) -> str:
    return str(((p.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name", ""))


def measure(
    events: list[Event], since: float, rbv: str, templates: dict[str, dict[str, str]], replicas: dict[str, int]
) -> dict[str, Any]:
    """The moments of one iteration, from the events received (all events, replayed from the start)."""
    pods_ready: dict[str, float] = {}
    pods_ready_wall: dict[str, float] = {}
    for ev, state in replay(events, "pod"):
        if ev.t < since:
            continue
        for target in TARGETS:
            if target in pods_ready:
                continue
            new_ready = [
                p
                for p in state.values()
                if _owner_deployment(p) == target
                and not p["metadata"].get("deletionTimestamp")
                and {c["name"]: c["image"] for c in p["spec"]["containers"]} == templates[target]
                and _pod_ready(p)
            ]
            if len(new_ready) >= replicas[target]:
                pods_ready[target] = ev.t
                pods_ready_wall[target] = ev.wall
    complete: dict[str, float] = {}
    complete_wall: dict[str, float] = {}
    for ev in events:
        if (
            ev.kind == "deployment"
            and ev.t >= since
            and ev.name not in complete
            and _template_images(ev.obj) == templates[ev.name]
            and _complete(ev.obj)
        ):
            complete[ev.name] = ev.t
            complete_wall[ev.name] = ev.wall
    verdict = next(
        (
            ev
            for ev in events
            if ev.kind == "rbv" and ev.name == rbv and (ev.obj.get("status") or {}).get("phase") == "Succeeded"
        ),
        None,
    )
    return {
        "pods_ready": max(pods_ready.values()) if len(pods_ready) == len(TARGETS) else None,
        "complete": max(complete.values()) if len(complete) == len(TARGETS) else None,
        "complete_wall": max(complete_wall.values()) if len(complete) == len(TARGETS) else None,
        "pods_ready_wall": max(pods_ready_wall.values()) if len(pods_ready) == len(TARGETS) else None,
        "verdict": verdict.t if verdict else None,
        "verdict_wall": verdict.wall if verdict else None,
    }


def _verdict_writes(audit: AuditLog, s: dict[str, Any]) -> dict[str, Any] | None:
    """From the audit log: the operator's status patches of this verification, and where the time
    between the Deployments' completion and the verdict went."""
    calls: dict[str, dict[str, float]] = {}
    for e in audit.records:
        ref = e.get("objectRef") or {}
        if (
            e.get("verb") == "patch"
            and ref.get("resource") == PLURAL
            and ref.get("subresource") == "status"
            and ref.get("name") == s["rbv"]
            and ref.get("namespace") == NAMESPACE
            and str(e.get("userAgent", "")).startswith(OPERATOR_USER_AGENTS)
        ):
            call = calls.setdefault(e["auditID"], {"received": parse_ts(e["requestReceivedTimestamp"])})
            if e.get("stage") == "ResponseComplete":
                call["done"] = parse_ts(e["stageTimestamp"])
    start, end = s["window"]
    writes = sorted(
        (c for c in calls.values() if "done" in c and start <= c["received"] < end), key=lambda c: c["received"]
    )
    if not writes:
        return None
    final = writes[-1]
    prior = writes[-2] if len(writes) > 1 else None
    return {
        "rbv": s["rbv"],
        "verdict_minus_complete": s["verdict_minus_complete"],
        "status_writes": len(writes),
        "writes_after_pods_ready": sum(c["received"] >= s["pods_ready_wall"] for c in writes),
        "complete_seen_to_verdict_patch_received": final["received"] - s["complete_wall"],
        "verdict_patch_server_seconds": final["done"] - final["received"],
        "progress_write_in_flight_at_complete": bool(prior and prior["done"] > s["complete_wall"]),
    }


def run(
    kubeconfig: Path, audit_log: Path | None, workdir: Path, iterations: int = 30, idle_seconds: float = 30
) -> dict[str, Any]:
    cluster = Cluster(kubeconfig)
    api = bench_api(kubeconfig)
    audit = AuditLog(audit_log) if audit_log else None
    cluster.install_crd()
    # The operator runs with the default settings (detection of agents in argocd): whether Argo CD's
    # Application CRD exists changes what it does, so say which case this is.
    argo_crd = cluster.kubectl("get", "crd", "applications.argoproj.io", check=False).returncode == 0
    ns = new_namespace(cluster, NAMESPACE)
    repo = GitOpsRepo(workdir / "gitops")
    revs = {"A": repo.commit_values(images("A"), "release A"), "B": repo.commit_values(images("B"), "release B")}
    helm_deploy(cluster, ns, repo.values_at(revs["A"]))
    helm_deploy(cluster, ns, repo.values_at(revs["B"]))
    for d in TARGETS:
        cluster.rollout_status(ns, d)

    samples: list[dict[str, Any]] = []
    recorder = Recorder(api, ns).start()
    kubectls: list[KubectlWatch] = []
    try:
        with running_operator(cluster, [ns], workdir / "operator") as op:
            # /readyz answers from kopf's startup handler, before kopf has started its watches: give
            # them time, so that the first iteration neither waits for them nor counts their requests.
            time.sleep(5)
            idle = [time.time()]
            time.sleep(idle_seconds)
            idle.append(time.time())
            for i in range(iterations):
                release = "A" if i % 2 == 0 else "B"
                name = f"latency-{i:02d}"
                mark = recorder.mark()
                created_wall = time.time()
                spec = git_values_spec(repo, revs[release], timeoutSeconds=120)
                cluster.apply(verification(name, spec), ns)
                recorder.wait_for(
                    lambda e, n=name: (
                        e.kind == "rbv"
                        and e.name == n
                        and "waiting" in str((e.obj.get("status") or {}).get("message", ""))
                    ),
                    timeout=30,
                    what=f"{name} to wait for the rollouts",
                    since=mark,
                )
                cluster.kubectl("-n", ns, "rollout", "pause", *(f"deployment/{d}" for d in TARGETS))
                # No revision: back to the previous one, which holds the other release (A <-> B).
                cluster.helm("rollback", "agents", "-n", ns)
                kubectls = [KubectlWatch(cluster, ns, d).start() for d in TARGETS]
                first_lines = [k.wait_first_line(30) for k in kubectls]
                if not all(line.startswith("Waiting") for line in first_lines):
                    raise RuntimeError(f"kubectl rollout status was not waiting before the resume: {first_lines}")
                time.sleep(0.5)  # let the operator and kubectl take in the paused template change
                latest = {ev.name: ev.obj for ev in recorder.snapshot() if ev.kind == "deployment"}
                templates = {name: _template_images(d) for name, d in latest.items()}
                replicas = {name: int(d["spec"].get("replicas", 1)) for name, d in latest.items()}
                trigger = time.monotonic()
                cluster.kubectl("-n", ns, "rollout", "resume", *(f"deployment/{d}" for d in TARGETS))
                recorder.wait_verdict(name, since=mark)
                t_kubectl = max(k.done(60) for k in kubectls)
                time.sleep(0.3)  # late watch events of this rollout
                m = measure(recorder.snapshot(), trigger, name, templates, replicas)
                status = next(
                    e.obj["status"] for e in reversed(recorder.snapshot()) if e.kind == "rbv" and e.name == name
                )
                if status.get("phase") != "Succeeded":
                    raise RuntimeError(
                        f"{name} ended {status.get('phase')}/{status.get('reason')}: {status.get('message')}"
                    )
                if m["pods_ready"] is None or m["complete"] is None or m["verdict"] is None:
                    raise RuntimeError(f"iteration {i}: a moment was not observed: {m}")
                samples.append(
                    {
                        "iteration": i,
                        "to": release,
                        "trigger_to_pods_ready": m["pods_ready"] - trigger,
                        "trigger_to_complete": m["complete"] - trigger,
                        "verdict_minus_pods_ready": m["verdict"] - m["pods_ready"],
                        "verdict_minus_complete": m["verdict"] - m["complete"],
                        "kubectl_minus_pods_ready": t_kubectl - m["pods_ready"],
                        "kubectl_minus_complete": t_kubectl - m["complete"],
                        "verdict_minus_kubectl": m["verdict"] - t_kubectl,
                        "window": [created_wall, m["verdict_wall"] + 1.0],
                        "rbv": name,
                        "pods_ready_wall": m["pods_ready_wall"],
                        "complete_wall": m["complete_wall"],
                    }
                )
            metrics_text = op.metrics()
            time.sleep(1.0)
    finally:
        for k in kubectls:
            k.kill()
        recorder.stop()

    result: dict[str, Any] = {
        "iterations": iterations,
        "application_crd_installed": argo_crd,
        "samples": samples,
        "summary": {
            key: summary([s[key] for s in samples])
            for key in (
                "verdict_minus_pods_ready",
                "kubectl_minus_pods_ready",
                "verdict_minus_complete",
                "kubectl_minus_complete",
                "verdict_minus_kubectl",
                "trigger_to_pods_ready",
                "trigger_to_complete",
            )
        },
        "operator_histogram": histogram(metrics_text, "rollback_verification_verdict_latency_seconds"),
    }
    if audit is not None:
        # Windows end where the next verification starts: an Event posted just after a verdict, or a
        # next verification's first writes, must not count twice.
        for s, nxt in itertools.pairwise(samples):
            s["window"][1] = min(s["window"][1], nxt["window"][0])
        sync_audit(audit, api)
        per = []
        everything = []
        for s in samples:
            reqs = audit.requests(OPERATOR_USER_AGENTS, *s["window"])
            per.append(len(reqs))
            everything += reqs
        result["operator_requests_per_verification"] = {
            "summary": summary([float(n) for n in per]),
            "counts": per,
            "breakdown_total": breakdown(everything),
            "window": "from a RollbackVerification's creation to 1 s after its verdict was seen (or the next creation)",
        }
        writes = [w for w in (_verdict_writes(audit, s) for s in samples) if w is not None]
        result["verdict_writes"] = {
            "samples": writes,
            "complete_seen_to_verdict_patch_received": summary(
                [w["complete_seen_to_verdict_patch_received"] for w in writes]
            ),
            "verdict_patch_server_seconds": summary([w["verdict_patch_server_seconds"] for w in writes]),
            "status_writes": summary([float(w["status_writes"]) for w in writes]),
            "writes_after_pods_ready": summary([float(w["writes_after_pods_ready"]) for w in writes]),
            "progress_write_in_flight_at_complete": sum(w["progress_write_in_flight_at_complete"] for w in writes),
        }
        idle_reqs = audit.requests(OPERATOR_USER_AGENTS, *idle)
        whole = audit.requests(OPERATOR_USER_AGENTS, idle[0], samples[-1]["window"][1] if samples else idle[1])
        lists = sorted(r.received for r in whole if r.verb == "list" and r.resource == "applications")
        result["operator_requests_idle"] = {
            "seconds": round(idle[1] - idle[0], 1),
            "total": len(idle_reqs),
            "breakdown": breakdown(idle_reqs),
        }
        result["operator_requests_whole_run"] = {
            "seconds": round((samples[-1]["window"][1] if samples else idle[1]) - idle[0], 1),
            "total": len(whole),
            "breakdown": breakdown(whole),
            "seconds_between_application_lists": [round(b - a, 1) for a, b in itertools.pairwise(lists)],
        }
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return result
