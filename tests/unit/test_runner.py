"""The runner on fakes of its own interfaces and on fake time: what the e2e suite shows on a real API
server (writes under a resourceVersion precondition, one verdict, the progress throttle, a resumed
deadline, the backoff after errors) decided here step by step, in milliseconds."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rollback_verifier.controller.metrics import Metrics
from rollback_verifier.controller.runner import (
    MAX_BACKOFF_SECONDS,
    PROGRESS_DETAIL_INTERVAL,
    PROGRESS_INTERVAL,
    RECENT_VERDICT_SECONDS,
    RECHECK_SECONDS,
    VerificationRunner,
    now_iso,
)
from tests.unit.factories import IMAGE_A, IMAGE_B, deployment, pod
from tests.unit.fakes import EPOCH, FakeCaches, FakeClock, FakeCluster, InlinePools, RecordedEvents

NS = "agents"


def verification(
    name: str = "rv", *, image: str = IMAGE_A, timeout: int = 120, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "rollback.example/v1alpha1",
        "kind": "RollbackVerification",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "revision": "0123456789abcdef",
            "targets": [{"name": "agents", "image": image}],
            "timeoutSeconds": timeout,
        },
        "status": status or {},
    }


def rolled_out(image: str = IMAGE_A, *, replicas: int = 2, updated: int | None = None) -> FakeCluster:
    """A cluster whose Deployment `agents` runs `image` on `replicas` ready pods (`updated` of them new)."""
    updated = replicas if updated is None else updated
    cluster = FakeCluster()
    cluster.deployments[(NS, "agents")] = deployment(
        images={"app": image}, replicas=replicas, total=replicas, updated=updated, available=replicas
    )
    cluster.pods[NS] = [pod(f"agents-{i}", images={"app": image}) for i in range(replicas)]
    return cluster


@dataclass
class Operator:
    runner: VerificationRunner
    cluster: FakeCluster
    clock: FakeClock
    events: RecordedEvents
    metrics: Metrics
    caches: FakeCaches

    def status(self, name: str = "rv") -> dict[str, Any]:
        return dict(self.cluster.verifications[(NS, name)].get("status") or {})

    def phase(self, name: str = "rv") -> str | None:
        return self.status(name).get("phase")

    def observe(self, name: str = "rv") -> None:
        self.runner.observe("ADDED", copy.deepcopy(self.cluster.verifications[(NS, name)]))

    def verdicts(self) -> list[dict[str, Any]]:
        return [p for p in self.cluster.patches if p.get("completedAt")]

    def counted(self, phase: str, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "rollback_verification_completed_total", {"application": "", "phase": phase, "reason": reason}
        )
        return value or 0.0


def operator(
    cluster: FakeCluster,
    clock: FakeClock | None = None,
    metrics: Metrics | None = None,
    applications: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> Operator:
    clock = clock or FakeClock()
    applications = applications if applications is not None else {}
    cluster.clock = clock
    events = RecordedEvents()
    metrics = metrics or Metrics()
    caches = FakeCaches(cluster)
    runner = VerificationRunner(
        fresh=cluster,
        statuses=cluster,
        events=events,
        secrets=cluster,
        metrics=metrics,
        reader=None,
        get_application=lambda ns, name: applications.get((ns, name)),
        workers=InlinePools(),
        caches=caches,
        clock=clock,
    )
    return Operator(runner, cluster, clock, events, metrics, caches)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_a_rolled_out_target_is_verified_in_one_write_with_its_events() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.cluster.add_verification(verification())
        op.observe()
        await op.clock.run_until(lambda: op.phase() == "Succeeded", within=5)
        # Resolved at once (images in the spec): Running, startedAt and the verdict land in one write.
        assert len(op.cluster.patches) == 1
        status = op.status()
        assert status["startedAt"] == now_iso(EPOCH)
        assert status["completedAt"] == now_iso(op.clock.time())
        assert status["detectedBy"] == "Manual"
        assert status["shortRevision"] == "01234567"
        assert status["targets"][0]["rolloutComplete"] is True
        assert op.events.reasons() == ["Started", "Verified"]
        assert op.counted("Succeeded", "Verified") == 1
        assert op.runner.active == 0
        assert op.caches.users == {}  # the job released its target's caches

    run(scenario)


def test_a_write_that_conflicts_with_another_writer_is_retried_on_the_fresh_object() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.cluster.add_verification(verification())
        # Someone else (kopf, a user's label) writes between the runner's read and its write.
        op.cluster.before_next_write.append(lambda obj: op.cluster.write_by_someone_else(NS, "rv", {"note": "x"}))
        op.observe()
        await op.clock.run_until(lambda: op.phase() == "Succeeded", within=5)
        assert len(op.verdicts()) == 1
        assert op.status()["note"] == "x"  # the other writer's field survived: the patch was not blind
        assert op.counted("Succeeded", "Verified") == 1

    run(scenario)


def test_a_conflict_whose_re_read_shows_a_verdict_ends_the_job_without_a_second_verdict() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.cluster.add_verification(verification())
        other_verdict = {"phase": "Failed", "reason": "TimedOut", "completedAt": now_iso(EPOCH)}
        op.cluster.before_next_write.append(lambda obj: op.cluster.write_by_someone_else(NS, "rv", other_verdict))
        op.observe()
        await op.clock.run_until(lambda: op.runner.active == 0, within=5)
        assert op.cluster.patches == []  # nothing written over the other verdict
        assert op.phase() == "Failed"
        assert op.counted("Succeeded", "Verified") == 0
        assert "Verified" not in op.events.reasons()

    run(scenario)


def test_a_verdict_that_landed_without_a_reply_is_counted_and_announced_once() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.cluster.add_verification(verification())
        op.cluster.lost_replies = 1  # the verdict is committed, but the client times out reading the reply
        op.observe()
        await op.clock.run_until(lambda: op.runner.active == 0, within=MAX_BACKOFF_SECONDS)
        assert len(op.verdicts()) == 1  # the retry found the verdict recorded and wrote no second one
        assert op.counted("Succeeded", "Verified") == 1  # ...and knew it for its own
        assert op.events.reasons().count("Verified") == 1

    run(scenario)


def test_two_operators_on_one_object_write_and_count_one_verdict() -> None:
    async def scenario() -> None:
        cluster = rolled_out()
        clock = FakeClock()
        first, second = operator(cluster, clock), operator(cluster, clock)
        cluster.add_verification(verification())
        first.observe()
        second.observe()  # both saw the same resourceVersion
        await clock.run_until(lambda: first.runner.active == second.runner.active == 0, within=5)
        assert len(first.verdicts()) == 1
        assert first.counted("Succeeded", "Verified") + second.counted("Succeeded", "Verified") == 1

    run(scenario)


def test_progress_is_throttled_and_the_verdict_is_not() -> None:
    async def scenario() -> None:
        op = operator(rolled_out(updated=0, replicas=3))
        op.cluster.add_verification(verification())
        op.observe()
        await op.clock.run_until(lambda: len(op.cluster.patches) == 1, within=2)
        assert op.phase() == "Running"
        assert op.status()["targets"][0]["updatedReplicas"] == 0
        # Counts change every 0.1 s (a rollout's pod events): written once per PROGRESS_DETAIL_INTERVAL.
        for updated in (1, 2):
            op.cluster.deployments[(NS, "agents")]["status"]["updatedReplicas"] = updated
            op.runner.nudge(NS, "agents")
            await op.clock.advance(0.1)
        await op.clock.advance(PROGRESS_DETAIL_INTERVAL - 0.5)
        assert len(op.cluster.patches) == 1
        await op.clock.advance(0.5)
        assert len(op.cluster.patches) == 2
        assert op.status()["targets"][0]["updatedReplicas"] == 2  # the newest counts, not each step
        # The verdict: written at the change that decides it, not at the end of an interval.
        op.cluster.deployments[(NS, "agents")]["status"]["updatedReplicas"] = 3
        op.runner.nudge(NS, "agents")
        decided = op.clock.time()
        await op.clock.settle()
        assert op.phase() == "Succeeded"
        assert op.status()["completedAt"] == now_iso(decided)

    run(scenario)


def test_a_change_of_state_is_written_within_the_progress_interval() -> None:
    async def scenario() -> None:
        op = operator(rolled_out(updated=0, replicas=3, image=IMAGE_B))
        op.cluster.add_verification(verification())
        op.observe()
        await op.clock.run_until(lambda: len(op.cluster.patches) == 1, within=2)
        # The rollout completes, on the wrong image: a change of state (rolloutComplete), not of counts.
        op.cluster.deployments[(NS, "agents")]["status"]["updatedReplicas"] = 3
        op.runner.nudge(NS, "agents")
        await op.clock.run_until(lambda: len(op.cluster.patches) == 2, within=PROGRESS_INTERVAL)
        assert op.status()["targets"][0]["rolloutComplete"] is True
        assert op.phase() == "Running"

    run(scenario)


class CountingCaches(FakeCaches):
    """FakeCaches counting, per target, the checks of its cache state."""

    def __init__(self, cluster: FakeCluster) -> None:
        super().__init__(cluster)
        self.state_checks: dict[str, int] = {}

    def unsynced(self, namespace: str, name: str) -> str | None:
        self.state_checks[name] = self.state_checks.get(name, 0) + 1
        return super().unsynced(namespace, name)


def counting(cluster: FakeCluster, targets: list[str]) -> tuple[Operator, CountingCaches]:
    """An operator on CountingCaches, verifying one object whose targets are `targets` (all rolling out)."""
    op = operator(cluster)
    caches = CountingCaches(cluster)
    op.runner.caches = caches
    for name in targets:
        cluster.deployments[(NS, name)] = deployment(
            name, NS, images={"app": IMAGE_A}, replicas=3, total=3, updated=0, available=3
        )
        cluster.pods.setdefault(NS, []).extend(pod(f"{name}-{i}", name, NS, images={"app": IMAGE_A}) for i in range(3))
    body = verification()
    body["spec"]["targets"] = [{"name": name, "image": IMAGE_A} for name in targets]
    cluster.add_verification(body)
    return op, caches


def test_an_event_of_one_target_checks_the_cache_state_of_that_target_only() -> None:
    async def scenario() -> None:
        targets = ["web", "api", "worker"]
        op, caches = counting(FakeCluster(), targets)
        op.observe()
        await op.clock.run_until(lambda: len(op.cluster.patches) == 1, within=2)
        before = dict(caches.state_checks)
        assert set(before) == set(targets)
        op.cluster.deployments[(NS, "api")]["status"]["updatedReplicas"] = 1
        op.runner.nudge(NS, "api")
        await op.clock.advance(0.1)
        assert caches.state_checks == {**before, "api": before["api"] + 1}
        assert op.phase() == "Running"

    run(scenario)


def test_a_restarted_operator_resumes_with_the_deadline_of_startedAt() -> None:
    async def scenario() -> None:
        started = now_iso(EPOCH - 100)
        running = {"phase": "Running", "startedAt": started, "detectedBy": "Manual", "message": "m"}
        op = operator(rolled_out(updated=0))  # the rollout never completes: times out
        op.cluster.add_verification(verification(timeout=120, status=running))
        op.observe()
        await op.clock.run_until(lambda: op.phase() == "Failed", within=60)
        assert op.clock.time() == EPOCH + 20  # 120 s after the first operator started it, not after this one
        status = op.status()
        assert status["reason"] == "RolloutTimeout"
        assert status["startedAt"] == started
        assert status["durationSeconds"] == 120
        assert all("startedAt" not in p for p in op.cluster.patches)
        assert op.events.reasons() == ["Started", "RolloutTimeout"]  # Started ensured (named: never doubled)

    run(scenario)


def test_after_errors_a_job_backs_off_up_to_the_maximum_with_one_warning() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.cluster.add_verification(verification())
        # Each attempt tries the verdict, then the Running fields alone; the 10th write works again.
        op.cluster.failing_writes = 9
        op.observe()
        await op.clock.run_until(lambda: op.phase() == "Succeeded", within=60)
        tried_at = sorted({t - EPOCH for t in op.cluster.attempts})
        assert tried_at == [0, 1, 3, 7, 15, 15 + MAX_BACKOFF_SECONDS]
        assert op.events.reasons().count("VerifierError") == 1  # one Warning per outage
        assert op.counted("Succeeded", "Verified") == 1

    run(scenario)


def test_a_watch_event_retries_a_failed_job_at_once_after_the_first_second() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.cluster.add_verification(verification())
        op.cluster.failing_writes = 7  # attempts at 0, 1, 3 and 7 fail; the next one waits 8 s
        op.observe()
        await op.clock.run_until(lambda: len(op.cluster.attempts) == 8, within=10)
        await op.clock.advance(1.5)
        op.runner.nudge(NS, "agents")  # the watches reconnected
        await op.clock.settle()
        assert op.phase() == "Succeeded"
        assert op.clock.time() - EPOCH == 8.5

    run(scenario)


def test_caches_that_lag_do_not_make_a_verdict_until_the_api_server_agrees() -> None:
    async def scenario() -> None:
        cluster = rolled_out(updated=1)
        op = operator(cluster)
        # The caches show the rollout done; the API server says one of two pods is not updated yet.
        op.caches.frozen = {(NS, "agents"): rolled_out().deployments[(NS, "agents")]}
        cluster.add_verification(verification())
        op.observe()
        await op.clock.advance(10)
        assert op.phase() == "Running"
        assert op.verdicts() == []
        cluster.deployments[(NS, "agents")]["status"]["updatedReplicas"] = 2  # no event: the cache is frozen
        await op.clock.run_until(lambda: op.phase() == "Succeeded", within=RECHECK_SECONDS)

    run(scenario)


def test_without_synced_caches_it_says_so_and_judges_on_a_fresh_read_at_the_deadline() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        op.caches.synced = False
        op.cluster.add_verification(verification(timeout=30))
        op.observe()
        await op.clock.run_until(lambda: op.phase() == "Succeeded", within=60)
        assert op.clock.time() == EPOCH + 30
        assert op.cluster.patches[0]["message"] == f"waiting for the caches: listing Deployment {NS}/agents"
        assert len(op.verdicts()) == 1

    run(scenario)


def test_an_invalid_spec_fails_at_once_with_its_reason() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        bad = verification()
        bad["spec"]["timeoutSeconds"] = 0
        op.cluster.add_verification(bad)
        op.observe()
        await op.clock.run_until(lambda: op.phase() == "Failed", within=1)
        assert op.status()["reason"] == "InvalidSpec"
        assert "timeoutSeconds" in op.status()["message"]

    run(scenario)


def test_a_recent_verdict_gets_its_event_ensured_once_and_an_old_one_none() -> None:
    async def scenario() -> None:
        op = operator(rolled_out())
        recent = {"phase": "Succeeded", "reason": "Verified", "message": "ok", "completedAt": now_iso(EPOCH - 60)}
        old = {**recent, "completedAt": now_iso(EPOCH - RECENT_VERDICT_SECONDS - 1)}
        op.cluster.add_verification(verification("recent", status=recent))
        op.cluster.add_verification(verification("old", status=old))
        for _ in range(2):  # a re-list delivers them again
            op.observe("recent")
            op.observe("old")
            await op.clock.settle()
        assert op.events.posted == [("recent", "Normal", "Verified", "ok")]
        assert op.cluster.patches == []
        assert op.runner.active == 0

    run(scenario)


def test_a_deleted_verification_stops_its_job_and_releases_its_caches() -> None:
    async def scenario() -> None:
        op = operator(rolled_out(image=IMAGE_B))
        op.cluster.add_verification(verification())
        op.observe()
        await op.clock.advance(3)
        assert op.runner.active == 1
        assert op.caches.users == {(NS, "agents"): 1}
        op.runner.observe("DELETED", op.cluster.get_verification(NS, "rv"))
        await op.clock.settle()
        assert op.runner.active == 0
        assert op.caches.users == {}

    run(scenario)


def test_an_unhealthy_application_holds_the_verdict_until_its_watch_says_healthy() -> None:
    async def scenario() -> None:
        app = {
            "metadata": {"name": "agents", "namespace": "argocd"},
            "spec": {"destination": {"namespace": NS}},
            "status": {"health": {"status": "Progressing"}},
        }
        op = operator(rolled_out(), applications={("argocd", "agents"): app})
        obj = verification()
        obj["spec"]["application"] = {"name": "agents", "namespace": "argocd"}
        op.cluster.add_verification(obj)
        op.observe()
        await op.clock.advance(30)
        assert op.phase() == "Running"  # the targets are done; the Application is not healthy yet
        app["status"]["health"]["status"] = "Healthy"
        op.runner.nudge_application("argocd", "agents")  # what the Application watch does on a change
        await op.clock.settle()
        assert op.phase() == "Succeeded"
        assert op.clock.time() == EPOCH + 30

    run(scenario)
