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
    VerificationRunner,
    now_iso,
)
from tests.unit.factories import IMAGE_A, deployment, pod
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


def operator(cluster: FakeCluster, clock: FakeClock | None = None, metrics: Metrics | None = None) -> Operator:
    clock = clock or FakeClock()
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
        get_application=lambda _ns, _name: None,
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
        assert op.caches.users == {}  # the job released the namespace's caches

    run(scenario)
