"""What every benchmark shares: the bench cluster, a recorder of watch events with local receive
times, the operator process's /proc figures and /metrics, the API server's audit log, and statistics.

Times: intervals use time.monotonic() taken in this process when an event is received; the audit
log's timestamps are wall-clock, compared with time.time() of the same host.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.support import ROOT, Cluster
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

CLUSTER_SH = ROOT / "tests" / "e2e" / "cluster" / "cluster.sh"
AUDIT_POLICY = Path(__file__).resolve().parent / "audit-policy.yaml"
CLUSTER_NAME = "rv-bench"
GROUP, VERSION, PLURAL = "gitops.proompteng.ai", "v1alpha1", "rollbackverifications"
ARGO = ("argoproj.io", "v1alpha1", "applications")
BENCH_USER_AGENT = "rv-bench/1"
# The operator's user agents: kopf's aiohttp session, and the kubernetes client's default.
OPERATOR_USER_AGENTS = ("kopf/", "OpenAPI-Generator/")


# -- the bench cluster ----------------------------------------------------------------------------
def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rollback-verifier"
    return Path(os.environ.get("RV_CACHE_DIR") or default)


def audit_log_path(name: str = CLUSTER_NAME) -> Path:
    # kwokctl's binary runtime writes the audit log beside the component logs.
    return cache_root() / "kwok" / "clusters" / name / "logs" / "audit.log"


def cluster_up(name: str = CLUSTER_NAME) -> Path:
    """cluster.sh up, with the kube-apiserver audit log on (kwokctl reads KWOK_KUBE_AUDIT_POLICY)."""
    env = {**os.environ, "RV_CLUSTER_NAME": name, "KWOK_KUBE_AUDIT_POLICY": str(AUDIT_POLICY)}
    up = subprocess.run([str(CLUSTER_SH), "up"], env=env, capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise RuntimeError(f"the bench cluster did not start:\n{up.stderr[-4000:]}")
    match = re.search(r"KUBECONFIG=(\S+)", up.stdout)
    if not match:
        raise RuntimeError(f"cluster.sh printed no KUBECONFIG:\n{up.stdout}")
    if "already up" in up.stderr and not audit_log_path(name).exists():
        raise RuntimeError(f"cluster '{name}' was already up without an audit log: stop it first")
    return Path(match.group(1))


def cluster_down(name: str = CLUSTER_NAME) -> None:
    env = {**os.environ, "RV_CLUSTER_NAME": name}
    subprocess.run([str(CLUSTER_SH), "down"], env=env, capture_output=True, check=False, timeout=120)


def bench_api(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes client whose requests the audit log tells apart from the operator's."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 16
    api = client.ApiClient(cfg)
    api.user_agent = BENCH_USER_AGENT
    return api


def new_namespace(cluster: Cluster, name: str) -> str:
    return cluster.create_namespace(name, fresh=True)


FINAL = ("Succeeded", "Failed")


def deployments_manifest(
    names: Iterable[str], image: str, replicas: int, pod_labels: dict[str, str] | None = None
) -> str:
    """A List of Deployments of one container each, selecting their pods by app.kubernetes.io/name."""
    items = []
    for name in names:
        labels = {"app.kubernetes.io/name": name}
        items.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": {**labels, **(pod_labels or {})}},
                        "spec": {"containers": [{"name": "app", "image": image}]},
                    },
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


# -- watch events with local receive times ---------------------------------------------------------
@dataclass
class Event:
    t: float  # time.monotonic() when this process received it
    wall: float  # time.time() at the same moment
    kind: str  # "pod" | "deployment" | "rbv" | "application"
    type: str  # ADDED | MODIFIED | DELETED | LISTED (objects present when the watch started)
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@dataclass
class Recorder:
    """Watches Pods, Deployments and RollbackVerifications of a namespace (and optionally the
    Applications of another) in threads; keeps every event with its receive time."""

    api: client.ApiClient
    namespace: str
    applications_namespace: str | None = None
    events: list[Event] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _synced: set[str] = field(default_factory=set)

    def _sources(self) -> dict[str, Callable[..., Any]]:
        core, apps, custom = client.CoreV1Api(self.api), client.AppsV1Api(self.api), client.CustomObjectsApi(self.api)
        ns = self.namespace

        def pods(**kw: Any) -> Any:
            return core.list_namespaced_pod(ns, **kw)

        def deployments(**kw: Any) -> Any:
            return apps.list_namespaced_deployment(ns, **kw)

        def rbvs(**kw: Any) -> Any:
            return custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw)

        out: dict[str, Callable[..., Any]] = {"pod": pods, "deployment": deployments, "rbv": rbvs}
        if self.applications_namespace:
            app_ns = self.applications_namespace

            def applications(**kw: Any) -> Any:
                return custom.list_namespaced_custom_object(*ARGO[:2], app_ns, ARGO[2], **kw)

            out["application"] = applications
        return out

    def start(self) -> Recorder:
        for kind, fn in self._sources().items():
            t = threading.Thread(target=self._run, args=(kind, fn), name=f"watch-{kind}", daemon=True)
            t.start()
            self._threads.append(t)
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._synced) == len(self._threads), timeout=30)
        if not ok:
            raise RuntimeError("the bench's watches did not start within 30 s")
        return self

    def stop(self) -> None:
        self._stop.set()

    def _add(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        ev = Event(time.monotonic(), time.time(), kind, type_, obj)
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()

    def _run(self, kind: str, fn: Callable[..., Any]) -> None:
        sanitize = self.api.sanitize_for_serialization
        while not self._stop.is_set():
            try:
                listed = fn(_request_timeout=30)
                listed = listed if isinstance(listed, dict) else sanitize(listed)
                for item in listed.get("items") or ():
                    self._add(kind, "LISTED", item)
                rv = listed["metadata"]["resourceVersion"]
                with self._cond:
                    self._synced.add(kind)
                    self._cond.notify_all()
                while not self._stop.is_set():
                    w = watch.Watch()
                    for ev in w.stream(fn, resource_version=rv, timeout_seconds=120, _request_timeout=(5, 150)):
                        obj = ev["object"]
                        obj = obj if isinstance(obj, dict) else sanitize(obj)
                        if ev["type"] == "ERROR":
                            raise ApiException(status=obj.get("code", 500), reason=str(obj))
                        rv = obj["metadata"]["resourceVersion"]
                        if ev["type"] != "BOOKMARK":
                            self._add(kind, ev["type"], obj)
                        if self._stop.is_set():
                            w.stop()
                            break
            except ApiException as exc:
                if exc.status != 410:
                    time.sleep(1)
            except Exception:
                time.sleep(1)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_verdict(self, name: str, since: int = 0, timeout: float = 60) -> Event:
        """The first event from index `since` on that shows RollbackVerification `name` with a verdict."""
        return self.wait_for(
            lambda e: e.kind == "rbv" and e.name == name and (e.obj.get("status") or {}).get("phase") in FINAL,
            timeout=timeout,
            what=f"the verdict of {name}",
            since=since,
        )

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, what: str, since: int = 0) -> Event:
        """The first event from index `since` on that satisfies predicate (waiting for it if needed)."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    ev = self.events[i]
                    i += 1
                    if predicate(ev):
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self._cond.wait(remaining)

    def snapshot(self, until: int | None = None) -> list[Event]:
        with self._cond:
            return list(self.events[:until])


def replay(events: Iterable[Event], kind: str) -> Iterator[tuple[Event, dict[str, dict[str, Any]]]]:
    """(event, state of all objects of `kind` after it) for each event of that kind."""
    state: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.kind != kind:
            continue
        if ev.type == "DELETED":
            state.pop(ev.name, None)
        else:
            state[ev.name] = ev.obj
        yield ev, state


# -- the operator process --------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (and VmSize, Threads) of a process, in kB (Threads: a count)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def histogram(metrics_text: str, name: str) -> dict[str, Any]:
    """count, sum and cumulative buckets of an unlabelled Prometheus histogram."""
    buckets: dict[str, float] = {}
    out: dict[str, Any] = {"count": None, "sum": None, "buckets": buckets}
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                buckets[le.group(1)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            out["count"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum"):
            out["sum"] = float(line.rsplit(" ", 1)[1])
    return out


# -- the audit log ---------------------------------------------------------------------------------
def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Request:
    received: float  # wall time the API server received it
    verb: str
    resource: str  # resource[/subresource], or the non-resource URL
    namespace: str
    name: str
    user_agent: str
    audit_id: str
    code: int | None = None  # the response's HTTP status (None while a watch still streams)


class AuditLog:
    """The kube-apiserver audit log (one JSON event per line and stage). Read incrementally; only the
    records of the operator's and the bench's user agents are kept."""

    def __init__(self, path: Path, user_agents: tuple[str, ...] = (*OPERATOR_USER_AGENTS, BENCH_USER_AGENT)) -> None:
        self.path = path
        self.user_agents = user_agents
        self.records: list[dict[str, Any]] = []
        self._offset = 0
        self._needles = [f'"userAgent":"{ua}'.encode() for ua in user_agents]

    def refresh(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written now waits for the next refresh
        self._offset += end
        for line in data[:end].splitlines():
            if any(n in line for n in self._needles):
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue

    def requests(self, user_agents: tuple[str, ...], start: float, end: float) -> list[Request]:
        """Requests received in [start, end) from these user agents: each request counted once, by its
        RequestReceived record (a watch too, however long it then streams)."""
        self.refresh()
        codes = {
            e.get("auditID"): (e.get("responseStatus") or {}).get("code")
            for e in self.records
            if e.get("stage") == "ResponseComplete"
        }
        out = []
        for e in self.records:
            if e.get("stage") != "RequestReceived" or not str(e.get("userAgent", "")).startswith(user_agents):
                continue
            received = parse_ts(e["requestReceivedTimestamp"])
            if not start <= received < end:
                continue
            ref = e.get("objectRef") or {}
            resource = ref.get("resource") or e.get("requestURI", "").split("?")[0]
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            out.append(
                Request(
                    received,
                    e.get("verb", ""),
                    resource,
                    ref.get("namespace", ""),
                    ref.get("name", ""),
                    e.get("userAgent", ""),
                    e.get("auditID", ""),
                    codes.get(e.get("auditID")),
                )
            )
        return out

    def first(self, predicate: Callable[[dict[str, Any]], bool], start: float) -> dict[str, Any] | None:
        """The first kept record received at or after `start` that satisfies predicate."""
        self.refresh()
        for e in self.records:
            if parse_ts(e.get("requestReceivedTimestamp", "1970-01-01T00:00:00Z")) >= start and predicate(e):
                return e
        return None


def breakdown(requests: Iterable[Request]) -> dict[str, int]:
    """'verb resource' -> count, most frequent first; failed requests apart ('... -> 409')."""
    counts = Counter(f"{r.verb} {r.resource}" + (f" -> {r.code}" if r.code and r.code >= 300 else "") for r in requests)
    return dict(counts.most_common())


def sync_audit(log: AuditLog, api: client.ApiClient, timeout: float = 15) -> None:
    """Make a request of our own and wait until the log holds it: everything before it is written."""
    since = time.time()
    client.CoreV1Api(api).list_namespace(limit=1, _request_timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.first(lambda e: str(e.get("userAgent", "")).startswith(BENCH_USER_AGENT), since) is not None:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the audit log {log.path} did not record a request within {timeout:.0f}s")


# -- statistics ------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with n samples, p99 is the ceil(0.99 n)-th smallest (the max for n < 100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }
