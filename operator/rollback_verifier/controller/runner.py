"""Runs each RollbackVerification to its verdict: one asyncio task per unfinished object.

A task sleeps until something it depends on changes (a Deployment, a Pod, the Application: the
watch handlers nudge it) or its deadline comes, then evaluates the pure core again. No polling.
State lives in the object's status: a restarted operator reads `status.startedAt` and carries on
with the same deadline. The verdict is written with the object's resourceVersion as a
precondition, so it is written once even if two writers race.

Everything the runner touches outside the event loop is passed in, as the small interfaces below
(the fresh reads, the status writer, the event sink, the caches, the pools and the clock): the
operator passes the API client and kopf's Event poster, the unit tests plain fakes and a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import kopf
from pydantic import ValidationError

from rollback_verifier import LABEL_PREFIX
from rollback_verifier.api.models import (
    FINAL_PHASES,
    Condition,
    DetectedBy,
    Phase,
    Reason,
    RollbackVerificationSpec,
    RollbackVerificationStatus,
    Target,
    parse_spec,
)
from rollback_verifier.controller.clusters import OWN, Cluster, Clusters
from rollback_verifier.controller.kube import Conflict
from rollback_verifier.controller.metrics import Metrics
from rollback_verifier.controller.workers import GitBusy, Pools, Workers
from rollback_verifier.core.argocd import application_health, operation_running, orphans_of
from rollback_verifier.core.destinations import (
    ClusterSecretError,
    DestinationNotFound,
    destination_ref,
    effective_destination,
    unsupported_message,
)
from rollback_verifier.core.plain import format_time, parse_time
from rollback_verifier.core.rollout import DeploymentView, PodView, deployment_view, pod_view
from rollback_verifier.core.trust import (
    DestinationPolicy,
    NamespacePolicy,
    Refused,
    RepositoryPolicy,
    check_destination,
    check_reach,
)
from rollback_verifier.core.verdict import (
    ApplicationFacts,
    TargetEvaluation,
    TargetInput,
    Verdict,
    combine,
    evaluate_target,
    failed_before_start,
    merge_conditions,
)
from rollback_verifier.values.expectations import ExpectationError, Expectations, resolve_expectations
from rollback_verifier.values.git import GitValuesReader

log = logging.getLogger(__name__)

DETECTED_BY_LABEL = f"{LABEL_PREFIX}detected-by"
HOOK_ANNOTATION = "argocd.argoproj.io/hook"
# After an unexpected error (the API server unreachable, mostly) a job retries at once when a watch
# event arrives (the watches reconnecting), else after this backoff: short, as it only bounds the wait
# when nothing at all happens.
MAX_BACKOFF_SECONDS = 8.0
PROGRESS_INTERVAL = 1.0  # seconds between two progress writes of one verification (verdicts never wait)
PROGRESS_DETAIL_INTERVAL = 10.0  # ... when only counts changed, not the state
RECENT_VERDICT_SECONDS = 600.0  # a verdict this recent gets its Event ensured by a starting operator
RUNNING_GRACE_SECONDS = 1.0  # expected images resolved within this: no Running write of its own
# When the fresh read disagrees with the caches, the verdict is evaluated again this soon at the latest.
RECHECK_SECONDS = 2.0

T = TypeVar("T")

# What a verdict reads about one target: its Deployment (None: not found) and the pods it selects.
Facts = Callable[[str, str], tuple[DeploymentView | None, list[PodView]]]
# (namespace, name) -> (the caches' version of the target, what was worked out from those facts)
_Kept = dict[tuple[str, str], tuple[int, T]]


def _kept_for_version(kept: _Kept[T] | None, target: tuple[str, str], version: int | None, work: Callable[[], T]) -> T:
    """work() for `target`, reused while the caches' `version` of it is unchanged (read `version` before
    the facts `work` reads: a version then never labels newer facts than it stands for). With no `kept` or
    no version (not cached), work() every time."""
    hit = kept.get(target) if kept is not None else None
    if version is not None and hit is not None and hit[0] == version:
        return hit[1]
    value = work()
    if kept is not None and version is not None:
        kept[target] = (version, value)
    return value


class FreshReads(Protocol):
    """The targets read from the API server now (blocking: called in the API pool)."""

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_pods(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]: ...


class TargetStore(Protocol):
    """The watch caches of the target Deployments and their pods, held open while a verification needs them."""

    def acquire(self, namespace: str, name: str) -> None: ...
    def release(self, namespace: str, name: str) -> None: ...
    def version(self, namespace: str, name: str) -> int | None: ...  # changes with the target's cached facts
    def deployment(self, namespace: str, name: str) -> DeploymentView | None: ...
    def pods(self, namespace: str, name: str) -> list[PodView]: ...
    def unsynced(self, namespace: str, name: str) -> str | None: ...


class StatusWriter(Protocol):
    """RollbackVerifications read and their status merge-patched (blocking: called in the API pool)."""

    def get_verification(self, namespace: str, name: str) -> dict[str, Any]: ...
    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """The object as written; Conflict when resource_version is no longer the object's."""
        ...


class SecretReader(Protocol):
    def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]]: ...


class EventSink(Protocol):
    def post_once(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event named after the object and reason: posted at most once (blocking: in the API pool)."""
        ...

    def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event posted in the background, without waiting (the VerifierError warnings)."""
        ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (what status timestamps and deadlines are in)."""
        ...

    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def wait_for_first(clock: Clock, awaitable: Awaitable[Any], timeout: float) -> bool:
    """Wait until `awaitable` is done or `timeout` seconds of `clock` passed: whether it is done.
    The awaitable is not cancelled when the time is up (a future goes on; a coroutine's task is dropped)."""
    future = asyncio.ensure_future(awaitable)
    if future.done() or timeout <= 0:
        await asyncio.sleep(0)  # as asyncio.wait_for(timeout=0) does: what is ready now counts
        return future.done()
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait({future, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
    return future.done()


async def wait_for_wakeup(clock: Clock, wakeup: asyncio.Event, timeout: float) -> None:
    """Until `wakeup` is set or `timeout` seconds passed."""
    if wakeup.is_set():
        return
    waiter = asyncio.ensure_future(wakeup.wait())
    try:
        await wait_for_first(clock, waiter, timeout)
    finally:
        waiter.cancel()


class ApiEvents:
    """The operator's event sink: named Events through the API client, the others through kopf."""

    def __init__(self, post_event_once: Callable[[Mapping[str, Any], str, str, str], None]) -> None:
        self._post_event_once = post_event_once

    def post_once(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._post_event_once(obj, type_, reason, message)

    def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        kopf.event(cast(kopf.Body, obj), type=type_, reason=reason, message=message)


def status_patch(status: RollbackVerificationStatus) -> dict[str, Any]:
    """The merge patch of the fields set on `status`: a field set to None removes it; the objects in its
    lists carry their non-empty fields only."""
    patch: dict[str, Any] = {name: None for name in status.model_fields_set if getattr(status, name) is None}
    patch.update(status.model_dump(mode="json", include=status.model_fields_set, exclude_none=True))
    return patch


def merged(*statuses: RollbackVerificationStatus) -> RollbackVerificationStatus:
    """One status with the fields set on any of `statuses`, the later ones winning: writes coalesced."""
    fields: dict[str, Any] = {}
    for status in statuses:
        fields.update(status.model_dump(include=status.model_fields_set))
    return RollbackVerificationStatus.model_validate(fields)


def now_iso(ts: float) -> str:
    return format_time(ts)


def detected_by(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    label = (meta.get("labels") or {}).get(DETECTED_BY_LABEL)
    if label in {d.value for d in DetectedBy}:
        return str(label)
    if HOOK_ANNOTATION in (meta.get("annotations") or {}):
        return DetectedBy.POST_SYNC_HOOK.value
    return DetectedBy.MANUAL.value


class _AlreadyDecided(Exception):
    """Another writer recorded the verdict: this job has nothing left to do."""


@dataclass(frozen=True)
class _Verdict:
    """A verdict as sent, with what its metrics need once its write is known to have landed."""

    verdict: Verdict
    started: float
    completed: float
    decided_by_change: float | None


@dataclass
class _Job:
    namespace: str
    name: str
    body: dict[str, Any]
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    targets: frozenset[tuple[str, str]] = frozenset()
    application: tuple[str, str] | None = None
    last_change: float | None = None  # wall time of the newest nudge not yet evaluated
    cached_targets: frozenset[tuple[str, str]] = frozenset()  # whose caches this job holds open
    cluster: Cluster | None = None  # where its targets live, once resolved (held open by this job)
    # Verdicts this job sent whose reply was lost (a timeout, a dropped connection), by completedAt: the
    # write may have landed all the same, and then it is this job's to count and announce.
    unconfirmed: dict[str, _Verdict] = field(default_factory=dict)


class VerificationRunner:
    def __init__(
        self,
        *,
        fresh: FreshReads,
        statuses: StatusWriter,
        events: EventSink,
        secrets: SecretReader,
        metrics: Metrics,
        reader: GitValuesReader | None,
        get_application: Callable[[str, str], dict[str, Any] | None],
        namespaces: NamespacePolicy | None = None,
        repositories: RepositoryPolicy | None = None,
        workers: Pools | None = None,
        caches: TargetStore | None = None,
        clock: Clock | None = None,
        clusters: Clusters | None = None,
        destinations: DestinationPolicy | None = None,
    ) -> None:
        self.fresh = fresh
        self.statuses = statuses
        self.events = events
        self.secrets = secrets
        self.clock = clock or SystemClock()
        # The trust rules (api.md "Trust boundaries"); the defaults are the strictest.
        self.namespaces = namespaces or NamespacePolicy()
        self.repositories = repositories or RepositoryPolicy()
        self.metrics = metrics
        self.reader = reader
        self.get_application = get_application
        self.workers: Pools = workers or Workers(budget_seconds=reader.timeout_seconds if reader else 60.0)
        self.caches = caches
        # Argo CD's destination clusters (None: only the own cluster, whose caches are `caches`).
        self.clusters = clusters
        self.destinations = destinations or DestinationPolicy()
        self._jobs: dict[str, _Job] = {}
        self._announced: set[str] = set()  # uids of recent verdicts whose Event this process ensured

    # -- inputs from the watch handlers --------------------------------------------------------
    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A RollbackVerification event: start, refresh or forget its job."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid"))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            job = self._jobs.pop(uid, None)
            if job and job.task:
                job.task.cancel()
            return
        job = self._jobs.get(uid)
        if job is not None:
            # The job keeps the body its own writes returned (a watch event may be older); it only needs
            # to learn that someone else wrote a verdict.
            if ((body.get("status") or {}).get("phase")) in FINAL_PHASES:
                job.body = dict(body)
                job.wakeup.set()
            return
        status = body.get("status") or {}
        if status.get("phase") in FINAL_PHASES:
            # A verdict is final: nothing to do, ever, but its Event, when it is recent: an operator killed
            # between the verdict's write and its Event posts it now (under its name: never twice).
            if uid not in self._announced and self.clock.time() - _completed(status) < RECENT_VERDICT_SECONDS:
                self._announced.add(uid)
                kind = "Normal" if status.get("phase") == Phase.SUCCEEDED.value else "Warning"
                reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
                task = asyncio.ensure_future(self.workers.api(self.events.post_once, dict(body), kind, reason, message))
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
            return
        job = _Job(namespace=str(meta.get("namespace")), name=str(meta.get("name")), body=dict(body))
        self._jobs[uid] = job
        job.task = asyncio.create_task(self._run(uid, job), name=f"verify {job.namespace}/{job.name}")

    def nudge(self, namespace: str, deployment: str | None = None, cluster: str = OWN) -> None:
        """A target Deployment of `cluster`, its pods or their caches changed (deployment=None: any of
        `namespace`)."""
        now = self.clock.time()
        for job in self._jobs.values():
            if (job.cluster.key if job.cluster else OWN) != cluster:
                continue
            if (
                (namespace, deployment) in job.targets
                if deployment is not None
                else any(ns == namespace for ns, _ in job.targets)
            ):
                job.last_change = now
                job.wakeup.set()

    def nudge_application(self, namespace: str, name: str) -> None:
        now = self.clock.time()
        for job in self._jobs.values():
            if job.application == (namespace, name):
                job.last_change = now
                job.wakeup.set()

    @property
    def active(self) -> int:
        return len(self._jobs)

    # -- one verification ----------------------------------------------------------------------
    async def _run(self, uid: str, job: _Job) -> None:
        backoff = 1.0
        app_label = ""
        failing = False  # within an outage: its Warning was posted already
        try:
            app_label = str(((job.body.get("spec") or {}).get("application") or {}).get("name") or "")
            self.metrics.in_progress.labels(app_label).inc()
            while True:
                try:
                    with contextlib.suppress(_AlreadyDecided):
                        await self._verify(job)
                    # Ended: by this job's verdict, or by one found recorded, maybe its own lost reply's.
                    await self._claim_landed_verdict(job)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # One broken object must never stop the others, nor spin: log, wait, try again.
                    log.warning("verification %s/%s: %s; retrying", job.namespace, job.name, exc, exc_info=True)
                    if not failing:  # one Warning per outage, not one per failed write
                        failing = True
                        self.events.post(job.body, "Warning", "VerifierError", f"retrying until it works: {exc}")
                    # A watch event (the watches reconnecting after an outage) retries at once.
                    await self.clock.sleep(min(backoff, 1.0))  # never faster than once a second
                    job.wakeup.clear()
                    await wait_for_wakeup(self.clock, job.wakeup, max(backoff - 1.0, 0.0))
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            self.metrics.in_progress.labels(app_label).dec()
            caches = self._caches(job)
            if caches is not None:
                for ns, name in job.cached_targets:
                    caches.release(ns, name)
            job.cached_targets = frozenset()
            if job.cluster is not None and self.clusters is not None:
                self.clusters.release(job.cluster)
            job.cluster = None
            if self._jobs.get(uid) is job:
                del self._jobs[uid]

    async def _verify(self, job: _Job) -> None:
        body = job.body
        status = dict(body.get("status") or {})
        try:
            spec = parse_spec(body.get("spec"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            await self._finish(
                job, failed_before_start(Reason.INVALID_SPEC, f"{where}: {first['msg']}"), self.clock.time()
            )
            return
        targets = spec.effective_targets(job.namespace)
        job.targets = frozenset((t.namespace or job.namespace, t.name) for t in targets)
        if spec.application:
            job.application = (spec.application.namespace, spec.application.name)
        try:
            check_reach(
                job.namespace,
                [ns for ns, _ in job.targets],
                job.application,
                self._application(spec),
                self.namespaces,
            )
        except Refused as exc:
            await self._finish(job, failed_before_start(Reason.INVALID_SPEC, exc.message), self.clock.time())
            return
        if job.cluster is None and self.clusters is not None:
            try:
                job.cluster = await self._cluster_of(job, spec, self.clusters)
            except Refused as exc:
                await self._finish(job, failed_before_start(Reason.INVALID_SPEC, exc.message), self.clock.time())
                return
            except (DestinationNotFound, ClusterSecretError) as exc:
                await self._finish(job, failed_before_start(Reason.CLUSTER_UNREACHABLE, str(exc)), self.clock.time())
                return
        # Caches only for targets the trust rules let this object reach.
        caches = self._caches(job)
        if caches is not None:
            for ns, name in job.targets - job.cached_targets:
                caches.acquire(ns, name)
            job.cached_targets = job.targets | job.cached_targets

        started_at = status.get("startedAt") or now_iso(self.clock.time())
        deadline = parse_time(started_at) + spec.timeoutSeconds
        application = self._application(spec)
        hook = detected_by(body) == DetectedBy.POST_SYNC_HOOK.value
        resolving = asyncio.ensure_future(self._resolve_bounded(spec, targets, job.namespace, application, hook))
        # Fields still to be written, with the next write: the Running write is coalesced with the first
        # progress (or the verdict) when the expected images resolve within RUNNING_GRACE_SECONDS; only a
        # slow resolution (a git read) gets a Running write of its own, so that startedAt (the deadline)
        # survives a restart and the status says what it waits for.
        pending = RollbackVerificationStatus()
        if status.get("phase") != Phase.RUNNING.value:
            pending = RollbackVerificationStatus(
                phase=Phase.RUNNING,
                startedAt=started_at,
                detectedBy=DetectedBy(detected_by(body)),
                message="resolving the expected images",
                observedGeneration=(body.get("metadata") or {}).get("generation"),
            )
            if not await wait_for_first(self.clock, resolving, RUNNING_GRACE_SECONDS):
                await self._write(job, pending)
                pending = RollbackVerificationStatus()
        # Also on a resume: the operator may have died between its Running write and this Event.
        await self.workers.api(
            self.events.post_once, job.body, "Normal", "Started", f"verifying {len(targets)} Deployments"
        )
        try:
            expectations = await resolving
        except ExpectationError as exc:
            verdict = failed_before_start(exc.reason, exc.message)
            await self._finish(job, verdict, parse_time(started_at), also=pending)
            return
        revision = expectations.revision or spec.revision
        pending = merged(
            pending,
            RollbackVerificationStatus(
                revision=revision, shortRevision=revision[:8] if revision else None, fromRevision=spec.fromRevision
            ),
        )

        last_written: Any = None
        last_shape: Any = None
        last_write_at = 0.0
        previous_fresh: tuple[Phase, Reason | None] | None = None
        # Each target's evaluation on the caches, kept while their version says its facts are unchanged: a
        # pod event re-evaluates its own target only, however many targets the verification has.
        kept: _Kept[TargetEvaluation] = {}
        kept_state: _Kept[str | None] = {}  # each target's cache state, kept the same way

        def evaluate(read: Facts | None) -> Verdict:
            """The verdict on the caches (read=None) or on a fresh read from the API server."""
            return self._evaluate(
                spec,
                targets,
                expectations,
                deadline_passed=self.clock.time() >= deadline,
                from_hook=hook,
                read=read or self._cached_reader(job),
                kept=kept if read is None else None,
                caches=self._caches(job),
            )

        while True:
            job.wakeup.clear()
            if (job.body.get("status") or {}).get("phase") in FINAL_PHASES:
                return  # another writer recorded the verdict
            decided_by_change = job.last_change
            job.last_change = None
            unsynced = self._unsynced(job, kept_state)
            if unsynced is not None and self.clock.time() < deadline:
                # Not judged on caches still listing (nor on ones the API server refuses): say why.
                message = f"waiting for the caches: {unsynced}"
                if message != (job.body.get("status") or {}).get("message"):
                    await self._write(job, merged(pending, RollbackVerificationStatus(message=message)))
                    pending = RollbackVerificationStatus()
                await wait_for_wakeup(self.clock, job.wakeup, deadline - self.clock.time())
                continue
            unreachable = job.cluster.unreachable() if job.cluster is not None and unsynced is not None else None
            if unreachable is not None:
                # At the deadline, a destination cluster still unreachable: no fact to judge on.
                verdict = failed_before_start(Reason.CLUSTER_UNREACHABLE, unreachable)
                await self._finish(job, verdict, parse_time(started_at), decided_by_change, pending)
                return
            fresh_reads: FreshReads = job.cluster.kube if job.cluster is not None else self.fresh
            # At the deadline without usable caches: judged on a fresh read alone.
            fresh_only = (
                await self.workers.api(self._read_fresh, fresh_reads, targets) if unsynced is not None else None
            )
            verdict = evaluate(fresh_only)
            wait = deadline - self.clock.time()
            if verdict.final and unsynced is not None:
                await self._finish(job, verdict, parse_time(started_at), decided_by_change, pending)
                return
            if verdict.final:
                # A verdict is final, so it is decided on fresh facts: the caches may lag the API server.
                fresh = evaluate(await self.workers.api(self._read_fresh, fresh_reads, targets))
                if fresh_read_agrees(verdict, fresh, previous_fresh):
                    await self._finish(job, fresh, parse_time(started_at), decided_by_change, pending)
                    return
                log.info(
                    "%s/%s: the caches say %s, the API server says %s (%s); evaluating again",
                    job.namespace,
                    job.name,
                    verdict.phase.value,
                    fresh.phase.value,
                    fresh.message,
                )
                previous_fresh = (fresh.phase, fresh.reason) if fresh.final else None
                wait = min(max(wait, 0.0), RECHECK_SECONDS) or RECHECK_SECONDS
                verdict = fresh if not fresh.final else verdict
            else:
                previous_fresh = None
            # Progress is written at most once per PROGRESS_INTERVAL: a rollout's many pod events must
            # not become as many status writes (each one delays the verdict's write behind it).
            # A change of state (a condition, a target rolled out or verified) is written within a second;
            # a change of counts only (2 of 3 updated) at most every PROGRESS_DETAIL_INTERVAL.
            progress = (verdict.message, verdict.targets)  # models compare by value
            shape = progress_shape(verdict)
            if not verdict.final and progress != last_written:
                since = self.clock.monotonic() - last_write_at
                interval = PROGRESS_INTERVAL if shape != last_shape else PROGRESS_DETAIL_INTERVAL
                if since >= interval:
                    await self._write(job, merged(pending, self._status_of(job, verdict)))
                    last_written, last_shape, last_write_at = progress, shape, self.clock.monotonic()
                    pending = RollbackVerificationStatus()
                else:
                    wait = min(wait, interval - since)
            if wait > 0:
                await wait_for_wakeup(self.clock, job.wakeup, wait)

    def _application(self, spec: RollbackVerificationSpec) -> dict[str, Any] | None:
        if spec.application is None:
            return None
        return self.get_application(spec.application.namespace, spec.application.name)

    async def _resolve_bounded(
        self,
        spec: RollbackVerificationSpec,
        targets: list[Target],
        namespace: str,
        application: dict[str, Any] | None,
        during_sync: bool,
    ) -> Expectations:
        """Expected images, read in the git pool within its budget (a hanging remote ends in
        ValuesUnavailable there, never in a wait of other verifications)."""

        def resolve() -> Expectations:
            return resolve_expectations(
                spec,
                targets,
                application=application,
                reader=self.reader,
                read_secret=lambda name: self.secrets.read_secret(namespace, name),
                during_sync=during_sync,
                repositories=self.repositories,
            )

        if all(t.image is not None for t in targets):
            return resolve()  # images given in the spec: no values to read, nothing to wait for
        try:
            return await self.workers.git(git_repository(spec, application), resolve)
        except GitBusy as exc:
            raise ExpectationError(Reason.VALUES_UNAVAILABLE, str(exc)) from None

    async def _cluster_of(self, job: _Job, spec: RollbackVerificationSpec, clusters: Clusters) -> Cluster:
        """The cluster the targets live in (api.md spec.destination), connected for this job. Raises
        Refused (the trust rules), DestinationNotFound or ClusterSecretError (unusable credentials)."""
        application = self._application(spec)
        requested = destination_ref(spec.destination.model_dump() if spec.destination else None)
        effective = effective_destination(requested, application)
        app_destination = destination_ref(((application or {}).get("spec") or {}).get("destination"))
        check_destination(job.namespace, requested, app_destination, effective, self.destinations)
        if effective is None or (effective.own_cluster and not self.destinations.enabled):
            return clusters.own()
        secret = await self.workers.api(clusters.lookup, effective)
        if secret is not None and secret.unsupported:
            raise ClusterSecretError(unsupported_message(secret))
        return clusters.acquire(secret)

    def _caches(self, job: _Job) -> TargetStore | None:
        return job.cluster.caches if job.cluster is not None else self.caches

    def _read_fresh(self, fresh: FreshReads, targets: list[Target]) -> Facts:
        """The targets' Deployments and pods read from the API server of their cluster now (in an API
        thread)."""
        read: dict[tuple[str, str], tuple[DeploymentView | None, list[PodView]]] = {}
        for t in targets:
            ns = t.namespace or ""
            obj = fresh.read_deployment(ns, t.name)
            if obj is None:
                read[(ns, t.name)] = (None, [])
                continue
            view = deployment_view(obj)
            selector = ",".join(f"{k}={v}" for k, v in sorted(view.selector.match_labels.items()))
            read[(ns, t.name)] = (view, [pod_view(p) for p in fresh.list_pods(ns, selector)])
        return lambda ns, name: read.get((ns, name), (None, []))

    def _cached_reader(self, job: _Job) -> Facts:
        caches = self._caches(job)

        def cached(namespace: str, name: str) -> tuple[DeploymentView | None, list[PodView]]:
            if caches is None:
                return None, []
            return caches.deployment(namespace, name), caches.pods(namespace, name)

        return cached

    def _unsynced(self, job: _Job, kept: _Kept[str | None]) -> str | None:
        """What is wrong with the first target's caches that are not synced and working, or None. A target's
        answer is kept while its version is unchanged (its version changes with its cache state too)."""
        caches = self._caches(job)
        if caches is None:
            return "no caches"
        for target in sorted(job.cached_targets):
            problem = _kept_for_version(
                kept, target, caches.version(*target), functools.partial(caches.unsynced, *target)
            )
            if problem is not None:
                return problem
        return None

    def _evaluate(
        self,
        spec: RollbackVerificationSpec,
        targets: list[Target],
        expectations: Expectations,
        *,
        deadline_passed: bool,
        from_hook: bool,
        read: Facts,
        kept: _Kept[TargetEvaluation] | None = None,
        caches: TargetStore | None = None,
    ) -> Verdict:
        """The verdict on what `read` returns: the watch caches, or a fresh read. With `kept` (and the
        `caches` read), the evaluation of a target whose cached facts kept their version is reused."""

        def evaluation(t: Target) -> TargetEvaluation:
            ns = t.namespace or ""
            deployment, pods = read(ns, t.name)
            expected = expectations.images[(ns, t.name)]
            return evaluate_target(TargetInput(t, expected, deployment, pods), spec.digestPolicy)

        evals = []
        for t in targets:
            key = (t.namespace or "", t.name)
            version = caches.version(*key) if kept is not None and caches is not None else None
            evals.append(_kept_for_version(kept, key, version, functools.partial(evaluation, t)))
        facts = None
        if spec.application is not None:
            app = self._application(spec)
            facts = ApplicationFacts(
                health=application_health(app),
                require_healthy=spec.requireApplicationHealthy,
                name=f"{spec.application.namespace}/{spec.application.name}",
                orphans=orphans_of(app, expectations.revision or spec.revision),
                fail_on_orphans=spec.failOnOrphans,
                operation_running=not from_hook and operation_running(app),
            )
        return combine(evals, facts, deadline_passed)

    def _status_of(self, job: _Job, verdict: Verdict) -> RollbackVerificationStatus:
        previous = [Condition.model_validate(c) for c in (job.body.get("status") or {}).get("conditions") or ()]
        return RollbackVerificationStatus(
            phase=verdict.phase,
            reason=verdict.reason,
            message=verdict.message,
            targets=list(verdict.targets),
            orphanedResources=list(verdict.orphans),
            conditions=merge_conditions(previous, verdict.conditions, now_iso(self.clock.time())),
        )

    async def _write(self, job: _Job, status: RollbackVerificationStatus) -> None:
        """Patch status under a resourceVersion precondition, never over a verdict: on a conflict, re-read
        and try again; if the re-read shows a verdict, another writer finished this job."""
        patch = status_patch(status)
        for _ in range(5):
            if (job.body.get("status") or {}).get("phase") in FINAL_PHASES:
                raise _AlreadyDecided
            rv = (job.body.get("metadata") or {}).get("resourceVersion")
            try:
                job.body = await self.workers.api(self.statuses.patch_status, job.namespace, job.name, patch, rv)
                return
            except Conflict:
                job.body = await self.workers.api(self.statuses.get_verification, job.namespace, job.name)
        raise RuntimeError("status could not be written after 5 conflicting updates")

    async def _finish(
        self,
        job: _Job,
        verdict: Verdict,
        started: float,
        decided_by_change: float | None = None,
        also: RollbackVerificationStatus | None = None,
    ) -> None:
        """Write the verdict exactly once; count it only if this write is the one that landed."""
        completed = self.clock.time()
        verdict_fields = RollbackVerificationStatus(
            completedAt=now_iso(completed), durationSeconds=round(completed - started, 1)
        )
        if "startedAt" not in (job.body.get("status") or {}):
            verdict_fields = merged(
                verdict_fields,
                RollbackVerificationStatus(startedAt=now_iso(started), detectedBy=DetectedBy(detected_by(job.body))),
            )
        status = merged(also or RollbackVerificationStatus(), self._status_of(job, verdict), verdict_fields)
        sent = _Verdict(verdict, started, completed, decided_by_change)
        try:
            await self._write(job, status)
        except _AlreadyDecided:
            return  # a verdict is already recorded: never write (or count) a second one (see _run)
        except Exception:
            job.unconfirmed[str(verdict_fields.completedAt)] = sent
            # The verdict write was refused (an admission webhook, a quota). The Running fields it carried
            # (startedAt: the deadline) are written on their own, so that a restart keeps the deadline and
            # the object says it is Running while the verdict is retried.
            if also is not None and also.model_fields_set:
                with contextlib.suppress(Exception):
                    await self._write(job, also)
            raise
        await self._announce(job, sent, self.clock.time())

    async def _claim_landed_verdict(self, job: _Job) -> None:
        """If the recorded verdict is one this job sent without hearing back, it landed: count and announce
        it now (no one else does: another writer's verdict has another completedAt, to the second)."""
        status = job.body.get("status") or {}
        sent = job.unconfirmed.get(str(status.get("completedAt")))
        if sent is not None and status.get("phase") == sent.verdict.phase.value:
            await self._announce(job, sent, self.clock.time())

    async def _announce(self, job: _Job, sent: _Verdict, written: float) -> None:
        """Count a verdict that landed and post its Event."""
        # One verdict landed: none of the earlier tries did, though one may share its completedAt second.
        job.unconfirmed.clear()
        verdict = sent.verdict
        app = str(((job.body.get("spec") or {}).get("application") or {}).get("name") or "")
        reason = verdict.reason.value if verdict.reason else ""
        self.metrics.record_verdict(app, verdict.phase.value, reason, sent.completed - sent.started, written)
        if sent.decided_by_change is not None:
            self.metrics.verdict_latency.observe(max(written - sent.decided_by_change, 0.0))
        kind = "Normal" if verdict.phase == Phase.SUCCEEDED else "Warning"
        self._announced.add(str((job.body.get("metadata") or {}).get("uid")))
        try:
            await self.workers.api(self.events.post_once, job.body, kind, reason, verdict.message)
        except Exception as exc:  # the verdict is written: an Event that cannot be posted does not undo it
            log.warning("%s/%s: cannot post the %s Event: %s", job.namespace, job.name, reason, exc)
        log.info("%s/%s: %s/%s: %s", job.namespace, job.name, verdict.phase.value, reason, verdict.message)


def fresh_read_agrees(cached: Verdict, fresh: Verdict, previous_fresh: tuple[Phase, Reason | None] | None) -> bool:
    """Whether the verdict the caches reached may be written, as decided on the fresh read.

    Yes when the fresh read reaches the same phase. Also when the fresh read reached the same final
    verdict on the previous evaluation too: two reads from the API server agree, and caches that stay
    behind (a stream frozen until its client timeout) must not hold a verdict the facts support.
    """
    if not fresh.final:
        return False
    return fresh.phase == cached.phase or previous_fresh == (fresh.phase, fresh.reason)


def git_repository(spec: RollbackVerificationSpec, application: Mapping[str, Any] | None) -> str:
    """The repository a verification reads its values from: the key its git reads are bounded by."""
    git = spec.valuesFrom.git if spec.valuesFrom else None
    if git is not None and git.repoURL:
        return git.repoURL
    source = ((application or {}).get("spec") or {}).get("source") or {}
    return str(source.get("repoURL") or "")


def progress_shape(verdict: Verdict) -> tuple[Any, ...]:
    """The state a progress write reports, without the counts: conditions and per-target flags."""
    return (
        verdict.phase,
        tuple((c.type, c.status, c.reason) for c in verdict.conditions),
        tuple((t.name, t.rolloutComplete, t.digestsVerified) for t in verdict.targets),
    )


def _completed(status: Mapping[str, Any]) -> float:
    try:
        return parse_time(str(status.get("completedAt")))
    except ValueError:
        return 0.0
