"""The verdict on plain data: digest policies, the most specific reason, conditions."""

from __future__ import annotations

import pytest

from rollback_verifier.api.models import Condition, OrphanedResource, Phase, Reason, Target
from rollback_verifier.core.images import parse_image
from rollback_verifier.core.rollout import deployment_view, evaluate_rollout, pod_view
from rollback_verifier.core.verdict import (
    TARGET_CHECKS,
    ApplicationFacts,
    TargetFacts,
    TargetInput,
    decide,
    evaluate_target,
    failed_before_start,
    merge_conditions,
)
from tests.unit.factories import DIGEST_A, DIGEST_PLATFORM, IMAGE_A, IMAGE_B, deployment, pod

EXPECTED_A = parse_image(IMAGE_A)
TARGET = Target(name="agents", namespace="agents", image=IMAGE_A)


def inp(dep: dict | None = None, pods: list[dict] | None = None, target: Target = TARGET) -> TargetInput:
    dep = deployment() if dep is None else dep
    pods = [pod("agents-1"), pod("agents-2")] if pods is None else pods
    return TargetInput(target, EXPECTED_A, deployment_view(dep), [pod_view(p) for p in pods])


def conditions(verdict) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in verdict.conditions}


# -- one target --------------------------------------------------------------------------------


def test_target_checks_judge_the_template_then_the_rollout_then_the_pods() -> None:
    assert [c.__name__ for c in TARGET_CHECKS] == [
        "_template_pins_expected_images",
        "_rollout_not_stuck",
        "_rollout_complete",
        "_every_available_pod_seen",
        "_pods_run_expected_images",
    ]


def test_every_target_check_passes_a_rolled_back_target_and_one_fails_each_fault() -> None:
    def facts(dep: dict, pods: list[dict]) -> TargetFacts:
        view = deployment_view(dep)
        ready = [pod_view(p) for p in pods]
        return TargetFacts(TARGET, EXPECTED_A, view, "Strict", ["app"], ready, evaluate_rollout(view))

    good = facts(deployment(), [pod("agents-1"), pod("agents-2")])
    assert [check(good) for check in TARGET_CHECKS] == [None] * len(TARGET_CHECKS)
    faults = {
        "_template_pins_expected_images": facts(deployment(images={"app": IMAGE_B}), [pod("agents-1")]),
        "_rollout_not_stuck": facts(deployment(progressing_reason="ProgressDeadlineExceeded"), [pod("agents-1")]),
        "_rollout_complete": facts(deployment(updated=1, available=1), [pod("agents-1")]),
        "_every_available_pod_seen": facts(deployment(), [pod("agents-1")]),
        "_pods_run_expected_images": facts(deployment(), [pod("agents-1"), pod("agents-2", images={"app": IMAGE_B})]),
    }
    assert set(faults) == {c.__name__ for c in TARGET_CHECKS}
    for check in TARGET_CHECKS:
        assert check(faults[check.__name__]) is not None, check.__name__


def test_a_rolled_back_target_with_matching_digests_is_verified() -> None:
    e = evaluate_target(inp(), "Strict")
    assert e.ok
    s = e.status
    assert s.rolloutComplete and s.digestsVerified
    assert s.expectedImages == {"app": str(EXPECTED_A)}
    assert s.observedImages == {"app": [f"registry.example/lab/jangar@{DIGEST_A}"]}
    assert (s.replicas, s.updatedReplicas, s.availableReplicas) == (2, 2, 2)


def test_a_missing_deployment_is_target_not_found() -> None:
    e = evaluate_target(TargetInput(TARGET, EXPECTED_A, None, []), "Auto")
    assert e.problem == Reason.TARGET_NOT_FOUND
    assert "agents/agents not found" in e.detail


def test_a_template_that_pins_another_image_is_an_image_mismatch() -> None:
    e = evaluate_target(inp(deployment(images={"app": IMAGE_B}), [pod("p", images={"app": IMAGE_B})]), "Auto")
    assert e.problem == Reason.IMAGE_MISMATCH
    assert IMAGE_B in e.detail and "expected" in e.detail


def test_an_unfinished_rollout_is_reported_with_kubectls_words() -> None:
    e = evaluate_target(inp(deployment(updated=1, available=1)), "Auto")
    assert e.problem == Reason.ROLLOUT_TIMEOUT
    assert "1 of 2 new replicas have been updated" in e.detail


def test_progress_deadline_exceeded_is_its_own_reason() -> None:
    e = evaluate_target(inp(deployment(progressing_reason="ProgressDeadlineExceeded", available=1)), "Auto")
    assert e.problem == Reason.PROGRESS_DEADLINE_EXCEEDED


def test_progress_deadline_exceeded_of_the_expected_template_fails_at_once() -> None:
    stuck = deployment(progressing_reason="ProgressDeadlineExceeded", updated=1, available=1)
    v = decide([inp(stuck)], "Auto", None, deadline_passed=False)
    assert (v.phase, v.reason) == (Phase.FAILED, Reason.PROGRESS_DEADLINE_EXCEEDED)


def test_progress_deadline_exceeded_of_the_release_rolled_back_from_keeps_waiting() -> None:
    # Release B is stuck; the verification for A starts before the undo: that PDE is B's, not A's.
    stuck_b = deployment(images={"app": IMAGE_B}, progressing_reason="ProgressDeadlineExceeded", updated=1)
    waiting = decide([inp(stuck_b, [pod("old-a")])], "Auto", None, deadline_passed=False)
    assert waiting.phase == Phase.RUNNING
    assert f"pod template runs {IMAGE_B}" in waiting.message and "exceeded its progress deadline" in waiting.message
    assert "waiting for the rollback to replace it" in waiting.message
    assert conditions(waiting)["RolloutComplete"] == ("False", "RolloutInProgress")
    assert conditions(waiting)["ImagesMatch"] == ("False", "ImageMismatch")
    at_deadline = decide([inp(stuck_b, [pod("old-a")])], "Auto", None, deadline_passed=True)
    assert (at_deadline.phase, at_deadline.reason) == (Phase.FAILED, Reason.IMAGE_MISMATCH)
    # After the undo the template pins A again: the controller has not yet replaced B's condition.
    undone = deployment(progressing_reason="ProgressDeadlineExceeded", generation=3, observed=2)
    assert decide([inp(undone)], "Auto", None, deadline_passed=False).phase == Phase.RUNNING


def test_a_ready_old_pod_still_running_the_previous_image_is_a_mismatch() -> None:
    pods = [pod("new"), pod("old", images={"app": IMAGE_B})]
    e = evaluate_target(inp(pods=pods), "Auto")
    assert e.problem == Reason.IMAGE_MISMATCH
    assert "pod old runs" in e.detail


def test_terminating_and_unready_surge_pods_are_not_judged() -> None:
    pods = [pod("new-1"), pod("new-2"), pod("old", images={"app": IMAGE_B}, terminating=True)]
    pods.append(pod("surge", images={"app": IMAGE_B}, ready=False))
    assert evaluate_target(inp(pods=pods), "Strict").ok


@pytest.mark.parametrize(
    ("policy", "ok", "verified"), [("Strict", False, False), ("Auto", True, False), ("Spec", True, False)]
)
def test_a_runtime_reporting_the_platform_digest_of_the_pinned_index(policy: str, ok: bool, verified: bool) -> None:
    platform = {"app": f"docker-pullable://registry.example/lab/jangar@{DIGEST_PLATFORM}"}
    pods = [pod("p1", image_ids=platform), pod("p2", image_ids=platform)]
    e = evaluate_target(inp(pods=pods), policy)
    assert e.ok is ok
    assert e.status.digestsVerified is verified
    if policy == "Strict":
        assert e.problem == Reason.DIGEST_MISMATCH and DIGEST_PLATFORM in e.detail
    if policy == "Auto":
        assert any("multi-arch index" in n for n in e.notes)


def test_the_auto_digest_note_is_said_once_not_once_per_pod() -> None:
    platform = {"app": f"docker-pullable://registry.example/lab/jangar@{DIGEST_PLATFORM}"}
    pods = [pod(f"p{i}", image_ids=platform) for i in range(5)]
    dep = deployment(replicas=5, updated=5, total=5, available=5)
    e = evaluate_target(inp(dep, pods), "Auto")
    assert e.ok and len(e.notes) == 1
    assert e.status.message is not None and e.status.message.count("multi-arch index") == 1
    v = decide([inp(dep, pods)], "Auto", None, deadline_passed=False)
    assert v.message.count("multi-arch index") == 1


def test_a_pod_that_has_not_reported_its_digest_yet_is_pending_under_strict_and_auto() -> None:
    pods = [pod("p1", image_ids={"app": ""}), pod("p2")]
    for policy in ("Strict", "Auto"):
        e = evaluate_target(inp(pods=pods), policy)
        assert e.problem == Reason.DIGEST_MISMATCH and "not reported" in e.detail
    assert evaluate_target(inp(pods=pods), "Spec").ok


def test_tag_only_expectations_pass_but_say_the_digest_is_unverified() -> None:
    tag_only = "registry.example/lab/jangar:aaa"
    target = Target(name="agents", namespace="agents", image=tag_only)
    dep = deployment(images={"app": tag_only})
    runtime = {"app": "registry.example/lab/jangar@" + DIGEST_A}
    pods = [pod(p, images={"app": tag_only}, image_ids=runtime) for p in ("p1", "p2")]
    e = evaluate_target(
        TargetInput(target, parse_image(tag_only), deployment_view(dep), [pod_view(p) for p in pods]),
        "Strict",
    )
    assert e.ok and not e.status.digestsVerified
    assert any("only the tag" in n for n in e.notes)


def test_zero_replicas_passes_on_the_template_alone() -> None:
    e = evaluate_target(inp(deployment(replicas=0, updated=0, total=0, available=0), pods=[]), "Strict")
    assert e.ok and not e.status.digestsVerified
    assert any("0 replicas" in n for n in e.notes)


def test_every_container_of_the_expected_repository_is_checked_by_default() -> None:
    images = {"app": IMAGE_A, "worker": IMAGE_B}  # the same repository: both are the values' image
    e = evaluate_target(inp(deployment(images=images), [pod("p", images=images)]), "Auto")
    assert e.problem == Reason.IMAGE_MISMATCH and "worker" in e.detail


LOG_SHIPPER = "registry.example/lab/log-shipper:3.0@sha256:" + "d" * 64


def test_a_sidecar_of_another_image_is_not_judged_by_default() -> None:
    images = {"app": IMAGE_A, "log-shipper": LOG_SHIPPER}
    pods = [pod("p1", images=images), pod("p2", images=images)]
    e = evaluate_target(inp(deployment(images=images), pods), "Strict")
    assert e.ok, e.detail
    assert set(e.status.expectedImages) == {"app"} and set(e.status.observedImages) == {"app"}
    assert e.status.digestsVerified


def test_no_container_of_the_expected_repository_names_what_it_found_and_suggests_containers() -> None:
    images = {"log-shipper": LOG_SHIPPER, "proxy": "registry.example/mesh/proxy:1.0"}
    e = evaluate_target(inp(deployment(images=images), [pod("p", images=images)]), "Auto")
    assert e.problem == Reason.IMAGE_MISMATCH
    assert "no container of the pod template runs registry.example/lab/jangar" in e.detail
    assert f"log-shipper={LOG_SHIPPER}" in e.detail and "proxy=registry.example/mesh/proxy:1.0" in e.detail
    assert "`containers:`" in e.detail
    assert not decide([inp(deployment(images=images))], "Auto", None, deadline_passed=False).final
    failed = decide([inp(deployment(images=images))], "Auto", None, deadline_passed=True)
    assert (failed.phase, failed.reason) == (Phase.FAILED, Reason.IMAGE_MISMATCH)


def test_injected_sidecars_and_init_containers_keep_passing() -> None:
    # A mesh proxy injected into the pods (not in the template) and an init container of another image.
    init = {"wait-for-db": "registry.example/tools/wait:1"}
    dep = deployment(init_images=init)
    injected = {"app": IMAGE_A, "istio-proxy": "docker.io/istio/proxyv2:1.22"}
    pods = [pod(f"p{i}", images=injected, init_images=init) for i in (1, 2)]
    e = evaluate_target(TargetInput(TARGET, EXPECTED_A, deployment_view(dep), [pod_view(p) for p in pods]), "Strict")
    assert e.ok, e.detail
    assert set(e.status.expectedImages) == {"app"}


def test_containers_narrow_the_check_and_may_name_init_containers() -> None:
    images = {"app": IMAGE_A, "sidecar": IMAGE_B}
    init = {"migrate": IMAGE_A}
    target = Target(name="agents", namespace="agents", image=IMAGE_A, containers=["app", "migrate"])
    dep = deployment(images=images, init_images=init)
    pods = [pod("p1", images=images, init_images=init), pod("p2", images=images, init_images=init)]
    e = evaluate_target(TargetInput(target, EXPECTED_A, deployment_view(dep), [pod_view(p) for p in pods]), "Strict")
    assert e.ok, e.detail
    assert set(e.status.expectedImages) == {"app", "migrate"}


def test_a_named_container_missing_from_the_template_is_reported() -> None:
    target = Target(name="agents", namespace="agents", image=IMAGE_A, containers=["nope"])
    e = evaluate_target(TargetInput(target, EXPECTED_A, deployment_view(deployment()), []), "Auto")
    assert e.problem == Reason.IMAGE_MISMATCH and "no container nope" in e.detail


# -- the verdict -------------------------------------------------------------------------------


def test_all_targets_verified_is_succeeded_with_every_condition_true() -> None:
    v = decide([inp(), inp()], "Auto", None, deadline_passed=False)
    assert (v.phase, v.reason) == (Phase.SUCCEEDED, Reason.VERIFIED)
    assert v.message == "2/2 Deployments run the reverted images (digests verified)"
    assert conditions(v) == {
        "ExpectedImagesResolved": ("True", "Resolved"),
        "RolloutComplete": ("True", "RolloutComplete"),
        "ImagesMatch": ("True", "ImagesMatch"),
        "Ready": ("True", "Verified"),
    }


def test_before_the_deadline_a_problem_keeps_it_running() -> None:
    v = decide([inp(), inp(deployment(updated=1))], "Auto", None, deadline_passed=False)
    assert v.phase == Phase.RUNNING and v.reason is None
    assert v.message.startswith("1/2 Deployments verified; waiting:")
    assert conditions(v)["Ready"] == ("False", "InProgress")
    assert conditions(v)["RolloutComplete"] == ("False", "RolloutInProgress")


def test_at_the_deadline_the_same_problem_fails_as_rollout_timeout() -> None:
    v = decide([inp(), inp(deployment(updated=1))], "Auto", None, deadline_passed=True)
    assert (v.phase, v.reason) == (Phase.FAILED, Reason.ROLLOUT_TIMEOUT)


def test_progress_deadline_exceeded_fails_before_the_deadline() -> None:
    v = decide([inp(deployment(progressing_reason="ProgressDeadlineExceeded"))], "Auto", None, deadline_passed=False)
    assert (v.phase, v.reason) == (Phase.FAILED, Reason.PROGRESS_DEADLINE_EXCEEDED)


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        (
            lambda: [TargetInput(TARGET, EXPECTED_A, None, []), inp(deployment(images={"app": IMAGE_B}))],
            Reason.TARGET_NOT_FOUND,
        ),
        (
            lambda: [inp(deployment(updated=1)), inp(deployment(images={"app": IMAGE_B}))],
            Reason.IMAGE_MISMATCH,
        ),
        (
            lambda: [inp(pods=[pod("p", image_ids={"app": ""})]), inp(deployment(available=1))],
            Reason.ROLLOUT_TIMEOUT,
        ),
    ],
)
def test_the_most_specific_reason_wins(inputs, reason: Reason) -> None:
    v = decide(inputs(), "Auto", None, deadline_passed=True)
    assert v.reason == reason


def test_an_unhealthy_application_blocks_success_when_required() -> None:
    unhealthy = ApplicationFacts(health="Degraded", require_healthy=True)
    v = decide([inp()], "Auto", unhealthy, deadline_passed=True)
    assert (v.phase, v.reason) == (Phase.FAILED, Reason.APPLICATION_UNHEALTHY)
    assert "Degraded" in v.message
    assert conditions(v)["ApplicationHealthy"][0] == "False"
    relaxed = ApplicationFacts(health="Degraded", require_healthy=False)
    assert decide([inp()], "Auto", relaxed, deadline_passed=True).phase == Phase.SUCCEEDED


def test_a_missing_application_is_unhealthy_and_named() -> None:
    facts = ApplicationFacts(health=None, require_healthy=True, name="argocd/agents")
    v = decide([inp()], "Auto", facts, deadline_passed=True)
    assert v.reason == Reason.APPLICATION_UNHEALTHY
    assert "the Application argocd/agents is not found, not Healthy" in v.message
    healthy = next(c for c in v.conditions if c.type == "ApplicationHealthy")
    assert healthy.message == "Application argocd/agents health: not found"


def test_orphans_are_reported_and_fail_only_when_asked() -> None:
    orphans = [OrphanedResource(kind="ConfigMap", namespace="agents", name="agents-extra-config")]
    reported = decide([inp()], "Auto", ApplicationFacts("Healthy", True, orphans, False), deadline_passed=False)
    assert reported.phase == Phase.SUCCEEDED and reported.orphans == orphans
    assert "ConfigMap/agents-extra-config" in reported.message
    failing = decide([inp()], "Auto", ApplicationFacts("Healthy", True, orphans, True), deadline_passed=True)
    assert (failing.phase, failing.reason) == (Phase.FAILED, Reason.ORPHANED_RESOURCES)


def test_failed_before_start_carries_the_reason_in_conditions() -> None:
    v = failed_before_start(Reason.VALUES_UNAVAILABLE, "no such file values.yaml at abc")
    assert (v.phase, v.reason, v.final) == (Phase.FAILED, Reason.VALUES_UNAVAILABLE, True)
    assert conditions(v) == {
        "ExpectedImagesResolved": ("False", "ValuesUnavailable"),
        "Ready": ("False", "ValuesUnavailable"),
    }


def test_merge_conditions_keeps_transition_times_of_unchanged_conditions() -> None:
    before = [
        Condition(type="Ready", status="False", reason="InProgress", lastTransitionTime="t0"),
        Condition(type="RolloutComplete", status="False", reason="RolloutInProgress", lastTransitionTime="t0"),
    ]
    now = [
        Condition(type="Ready", status="False", reason="InProgress", message="still"),
        Condition(type="RolloutComplete", status="True", reason="RolloutComplete"),
    ]
    merged = {c.type: c.lastTransitionTime for c in merge_conditions(before, now, "t1")}
    assert merged == {"Ready": "t0", "RolloutComplete": "t1"}


def test_a_running_argo_cd_operation_holds_the_verdict_back() -> None:
    running = ApplicationFacts(health="Healthy", require_healthy=True, operation_running=True)
    v = decide([inp()], "Auto", running, deadline_passed=False)
    assert v.phase == Phase.RUNNING and "sync operation is still running" in v.message
    assert conditions(v)["ApplicationHealthy"] == ("False", "OperationRunning")
    assert decide([inp()], "Auto", running, deadline_passed=True).reason == Reason.APPLICATION_UNHEALTHY


def test_what_runs_is_reported_even_when_the_template_is_wrong() -> None:
    e = evaluate_target(inp(deployment(images={"app": IMAGE_B}), [pod("p", images={"app": IMAGE_B})]), "Auto")
    assert e.problem == Reason.IMAGE_MISMATCH
    assert e.status.observedImages == {"app": [f"registry.example/lab/jangar@{IMAGE_B.rsplit('@', 1)[1]}"]}


# -- the pods judged cover what the Deployment counts (api.md, rule 3) --------------------------


@pytest.mark.parametrize("policy", ["Strict", "Auto"])
def test_no_pods_seen_while_the_deployment_counts_two_available_is_not_yet_never_a_pass(policy: str) -> None:
    # The defect: a lagging pod cache showed no pods, and the verdict said "no pods run (0 replicas)".
    e = evaluate_target(inp(pods=[]), policy)
    assert e.problem == Reason.DIGEST_MISMATCH
    assert "0 ready pods seen of the 2 the Deployment counts available" in e.detail
    assert not e.status.digestsVerified
    verdict = decide([inp(pods=[])], policy, None, deadline_passed=False)
    assert verdict.phase == Phase.RUNNING


@pytest.mark.parametrize("policy", ["Strict", "Auto"])
def test_fewer_ready_pods_seen_than_available_is_not_yet(policy: str) -> None:
    pods = [pod("agents-1"), pod("agents-2", ready=False)]
    e = evaluate_target(inp(pods=pods), policy)
    assert e.problem == Reason.DIGEST_MISMATCH and "1 ready pods seen of the 2" in e.detail


def test_the_spec_policy_does_not_judge_pods_so_it_needs_none_seen() -> None:
    assert evaluate_target(inp(pods=[]), "Spec").ok


def test_zero_replicas_pass_on_the_template_alone() -> None:
    e = evaluate_target(inp(deployment(replicas=0, updated=0, total=0, available=0), pods=[]), "Strict")
    assert e.ok and "no pods run (0 replicas)" in (e.status.message or "")


def test_pods_seen_covering_available_replicas_pass() -> None:
    pods = [pod("agents-1"), pod("agents-2"), pod("agents-3")]  # a surge pod still counted ready
    assert evaluate_target(inp(pods=pods), "Strict").ok
