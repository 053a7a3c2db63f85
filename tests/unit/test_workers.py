"""Blocking calls kept apart: a hanging repository holds neither API calls nor other repositories."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rollback_verifier.api.models import Phase, Reason, RollbackVerificationSpec
from rollback_verifier.controller.runner import fresh_read_agrees, git_repository
from rollback_verifier.controller.workers import GitBusy, Workers
from rollback_verifier.core.verdict import Verdict


def test_reads_of_a_hanging_repository_hold_one_thread_each_at_most_and_others_go_on() -> None:
    release = threading.Event()
    started: list[str] = []

    def hang(name: str) -> str:
        started.append(name)
        release.wait(10)
        return name

    async def scenario() -> tuple[str, str, list[str]]:
        workers = Workers(budget_seconds=5, api_threads=1, git_threads=2, per_repository=1)
        hanging = [asyncio.create_task(workers.git("https://hang.example/x", hang, f"h{i}")) for i in range(6)]
        await asyncio.sleep(0.05)
        other = await workers.git("https://ok.example/y", lambda: "read")
        api = await workers.api(lambda: "written")
        running = list(started)
        release.set()
        await asyncio.gather(*hanging)
        workers.shutdown()
        return other, api, running

    other, api, running = asyncio.run(scenario())
    assert (other, api) == ("read", "written")
    assert running == ["h0"]  # the other five waited in the event loop, holding no git thread


def test_a_read_that_outlasts_its_budget_is_git_busy_and_unbounded_callers_wait() -> None:
    release = threading.Event()

    async def scenario() -> str:
        workers = Workers(budget_seconds=0.2, git_threads=1)
        with pytest.raises(GitBusy, match=r"no answer within 0\.2s from https://hang\.example/x"):
            await workers.git("https://hang.example/x", release.wait, 5)
        release.set()
        result = await workers.git("https://hang.example/x", lambda: "done", bounded=False)
        workers.shutdown()
        return result

    assert asyncio.run(scenario()) == "done"


def _verdict(phase: Phase, reason: Reason | None = None) -> Verdict:
    return Verdict(phase, reason, "m", [])


def test_a_verdict_is_written_when_the_fresh_read_reaches_the_same_phase() -> None:
    cached = _verdict(Phase.SUCCEEDED, Reason.VERIFIED)
    assert fresh_read_agrees(cached, _verdict(Phase.SUCCEEDED, Reason.VERIFIED), None)
    assert not fresh_read_agrees(cached, _verdict(Phase.RUNNING), None)
    assert not fresh_read_agrees(_verdict(Phase.FAILED, Reason.ROLLOUT_TIMEOUT), cached, None)


def test_two_fresh_reads_that_agree_with_each_other_outvote_lagging_caches() -> None:
    stale = _verdict(Phase.FAILED, Reason.IMAGE_MISMATCH)
    fresh = _verdict(Phase.SUCCEEDED, Reason.VERIFIED)
    assert fresh_read_agrees(stale, fresh, (Phase.SUCCEEDED, Reason.VERIFIED))
    assert not fresh_read_agrees(stale, fresh, (Phase.FAILED, Reason.ROLLOUT_TIMEOUT))
    assert not fresh_read_agrees(stale, _verdict(Phase.RUNNING), (Phase.RUNNING, None))


def test_git_reads_are_keyed_by_the_values_repository_or_the_applications_source() -> None:
    spec = RollbackVerificationSpec.model_validate(
        {"application": {"name": "agents"}, "valuesFrom": {"git": {"path": "v.yaml"}}}
    )
    app = {"spec": {"source": {"repoURL": "https://git.example/gitops"}}}
    assert git_repository(spec, app) == "https://git.example/gitops"
    assert git_repository(spec, None) == ""
    explicit = RollbackVerificationSpec.model_validate(
        {"application": {"name": "agents"}, "valuesFrom": {"git": {"path": "v.yaml", "repoURL": "ssh://g/x"}}}
    )
    assert git_repository(explicit, app) == "ssh://g/x"


def test_a_progress_of_counts_only_keeps_its_shape_and_a_rolled_out_target_changes_it() -> None:
    from rollback_verifier.api.models import Target
    from rollback_verifier.controller.runner import progress_shape
    from rollback_verifier.core.images import parse_image
    from rollback_verifier.core.rollout import deployment_view, pod_view
    from rollback_verifier.core.verdict import TargetInput, decide
    from tests.unit.factories import IMAGE_A, deployment, pod

    target = Target(name="agents", namespace="agents", image=IMAGE_A)

    def verdict(updated: int, available: int, pods: int) -> Verdict:
        dep = deployment(replicas=3, updated=updated, total=3, available=available)
        views = [pod_view(pod(f"p{i}")) for i in range(pods)]
        return decide([TargetInput(target, parse_image(IMAGE_A), deployment_view(dep), views)], "Strict", None, False)

    one, two, done = verdict(1, 1, 1), verdict(2, 2, 2), verdict(3, 3, 3)
    assert one.message != two.message and progress_shape(one) == progress_shape(two)
    assert progress_shape(done) != progress_shape(two)
