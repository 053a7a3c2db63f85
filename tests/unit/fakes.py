"""Fakes of the operator's own small interfaces (runner.FreshReads, StatusWriter, EventSink, TargetStore,
workers.Pools, runner.Clock, detector.DetectionStore), holding plain dicts: the runner and the detector
run on them without a cluster, on fake time. Kubernetes behaviour itself is tested in tests/e2e."""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rollback_verifier.controller.kube import Conflict
from rollback_verifier.core.rollout import DeploymentView, PodView, deployment_view, pod_view

T = TypeVar("T")

EPOCH = 1_790_000_000.0  # fake wall time starts here (2026-09-21)


class FakeClock:
    """Time that moves only when the test says so. `sleep` waits for the fake time to reach its end;
    `run_until` jumps from one sleeper's end to the next, letting the event loop settle in between."""

    def __init__(self, start: float = EPOCH) -> None:
        self.now = start
        self._start = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - self._start + 100.0

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), next(self._seq), future))
        await future

    @staticmethod
    async def settle() -> None:
        """Let every task run until it waits (on fake time, an event or a future)."""
        for _ in range(100):
            await asyncio.sleep(0)

    def _next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def _fire(self) -> None:
        while (when := self._next_timer()) is not None and when <= self.now:
            _, _, future = heapq.heappop(self._timers)
            future.set_result(None)

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, waking the sleepers in order on the way."""
        end = self.now + seconds
        await self.settle()
        while (when := self._next_timer()) is not None and when <= end:
            self.now = max(self.now, when)
            self._fire()
            await self.settle()
        self.now = end
        await self.settle()

    async def run_until(self, condition: Callable[[], bool], *, within: float) -> None:
        """Move time on until `condition` holds; AssertionError if it does not within `within` seconds."""
        end = self.now + within
        await self.settle()
        while not condition():
            when = self._next_timer()
            if when is None or when > end:
                raise AssertionError(f"not reached within {within:g}s of fake time (now +{self.now - self._start:g}s)")
            self.now = max(self.now, when)
            self._fire()
            await self.settle()


class InlinePools:
    """workers.Pools calling inline: the fakes do not block, and fake time stays deterministic."""

    def __init__(self) -> None:
        self.git_reads: list[str] = []

    async def api(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args)

    async def git(self, repository: str, fn: Callable[..., T], *args: object, bounded: bool = True) -> T:
        self.git_reads.append(repository)
        return fn(*args)


def _merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386: null removes, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
    return all(labels.get(k) == v for k, v in wanted.items())


@dataclass
class FakeCluster:
    """RollbackVerifications, Deployments and Pods as plain dicts, with the API server's write rules
    that the runner relies on: a resourceVersion precondition (Conflict) and merge-patch semantics."""

    verifications: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    patches: list[dict[str, Any]] = field(default_factory=list)  # every status patch that landed
    attempts: list[float] = field(default_factory=list)  # clock time of every patch attempt
    failing_writes: int = 0  # so many writes fail (the API server unreachable) before they work again
    lost_replies: int = 0  # so many writes land but their reply is lost (a client timeout after the commit)
    # Run just before the next patch lands, in order: another writer changing the object in between.
    before_next_write: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    clock: FakeClock | None = None
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    _rv: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def add_verification(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        meta.setdefault("resourceVersion", str(next(self._rv)))
        self.verifications[(meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    def write_by_someone_else(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        obj = self.verifications[(namespace, name)]
        _merge_patch(obj.setdefault("status", {}), status)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    # -- runner.StatusWriter ---------------------------------------------------------------------
    def get_verification(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.verifications[(namespace, name)])

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        self.attempts.append(self.clock.time() if self.clock else 0.0)
        if self.failing_writes > 0:
            self.failing_writes -= 1
            raise ConnectionRefusedError("the API server is unreachable")
        if self.before_next_write:
            self.before_next_write.pop(0)(self.verifications[(namespace, name)])
        obj = self.verifications[(namespace, name)]
        if resource_version and resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(name)
        _merge_patch(obj.setdefault("status", {}), status)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.patches.append(copy.deepcopy(dict(status)))
        if self.lost_replies > 0:
            self.lost_replies -= 1
            raise TimeoutError("read timed out")
        return copy.deepcopy(obj)

    # -- runner.FreshReads, runner.SecretReader --------------------------------------------------
    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.deployments.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def list_pods(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        return [
            copy.deepcopy(p) for p in self.pods.get(namespace, []) if _matches(p["metadata"]["labels"], label_selector)
        ]

    def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
        raise LookupError(f"Secret {namespace}/{name} not found")

    # -- detector.DetectionStore -----------------------------------------------------------------
    def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        raise LookupError(f"Secret {namespace}/{name} not found")

    def create_verification(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        obj = copy.deepcopy(dict(body))
        meta = obj["metadata"]
        meta["namespace"] = namespace
        if (namespace, meta["name"]) in self.verifications:
            return None
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", f"{len(self.created):04d}")
        self.created.append(obj)
        return self.add_verification(obj)

    def list_verifications(self, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (ns, _), o in self.verifications.items()
            if (namespace is None or ns == namespace) and _matches(o["metadata"].get("labels") or {}, label_selector)
        ]

    def delete_verification(self, namespace: str, name: str, uid: str) -> None:
        obj = self.verifications.get((namespace, name))
        if obj is not None and obj["metadata"].get("uid") == uid:
            del self.verifications[(namespace, name)]
            self.deleted.append((namespace, name))


@dataclass
class FakeCaches:
    """runner.TargetStore over a FakeCluster: the caches see what the cluster holds, unless frozen
    (a stream that stopped delivering) or not synced yet."""

    cluster: FakeCluster
    synced: bool = True
    frozen: dict[tuple[str, str], dict[str, Any] | None] | None = None  # what a frozen cache still shows
    users: dict[tuple[str, str], int] = field(default_factory=dict)

    def acquire(self, namespace: str, name: str) -> None:
        self.users[(namespace, name)] = self.users.get((namespace, name), 0) + 1

    def release(self, namespace: str, name: str) -> None:
        self.users[(namespace, name)] -= 1
        if not self.users[(namespace, name)]:
            del self.users[(namespace, name)]

    def version(self, namespace: str, name: str) -> int | None:
        """Changes whenever what the caches show of the target changes (its content, here)."""
        if (namespace, name) not in self.users:
            return None
        source = self.frozen if self.frozen is not None else self.cluster.deployments
        facts = [source.get((namespace, name)), self.cluster.pods.get(namespace, []), self.synced]
        return hash(json.dumps(facts, sort_keys=True, default=str))

    def deployment(self, namespace: str, name: str) -> DeploymentView | None:
        source = self.frozen if self.frozen is not None else self.cluster.deployments
        found = source.get((namespace, name))
        return deployment_view(found) if found else None

    def pods(self, namespace: str, name: str) -> list[PodView]:
        return [pod_view(p) for p in self.cluster.pods.get(namespace, [])]

    def unsynced(self, namespace: str, name: str) -> str | None:
        if (namespace, name) not in self.users:
            return f"no caches for {namespace}/{name}"
        return None if self.synced else f"listing Deployment {namespace}/{name}"


@dataclass
class RecordedEvents:
    """runner.EventSink: the Events posted, named ones at most once (as Kube.post_event_once)."""

    posted: list[tuple[str, str, str, str]] = field(default_factory=list)  # (object name, type, reason, message)
    _names: set[str] = field(default_factory=set)

    def post_once(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('name')}.{meta.get('uid')}.{reason.lower()}"
        if key not in self._names:
            self._names.add(key)
            self.post(obj, type_, reason, message)

    def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.posted.append((str((obj.get("metadata") or {}).get("name")), type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.posted]
