"""The verdict: plain data in (expected images, Deployment and Pod views, Application facts), a phase,
the most specific reason, a message, per-target status and conditions out. No I/O.

Rules (api.md "When a verification succeeds"): every target rolled out with kubectl's rule, its pod
template pins the expected image for each checked container, and its running pods show it under
the digest policy; the Application is Healthy when required. A ProgressDeadlineExceeded fails at
once when the pod template already pins the expected images (the rollout TO the reverted state is
stuck); anything else still missing when the deadline passes fails with the most specific reason.
By default a target's checked containers are those running the expected image's repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rollback_verifier.api.models import (
    Condition,
    DigestPolicy,
    OrphanedResource,
    Phase,
    Reason,
    Target,
    TargetStatus,
)
from rollback_verifier.core.images import (
    ImageRef,
    digest_from_image_id,
    digest_matches,
    same_repository,
    template_image_matches,
)
from rollback_verifier.core.reasons import RULES, fails_at_once, most_fundamental, shown_in
from rollback_verifier.core.rollout import DeploymentView, PodView, RolloutState, evaluate_rollout, pods_of

HEALTHY = "Healthy"


@dataclass(frozen=True)
class TargetInput:
    target: Target  # namespace filled in
    expected: ImageRef
    deployment: DeploymentView | None
    pods: Sequence[PodView] = ()


@dataclass(frozen=True)
class TargetEvaluation:
    status: TargetStatus
    problem: Reason | None  # what is still wrong (the failure reason if the deadline passes now)
    detail: str  # one line for messages
    notes: tuple[str, ...] = ()  # caveats on a pass (tag-only, runtime digest differs under Auto)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _runtime_ref(image_id: str, image: str) -> str:
    """What a container runs, for display: the imageID without its runtime scheme, else the spec image."""
    if image_id:
        return image_id.split("://", 1)[-1]
    return image


def _observed(pods: Sequence[PodView], containers: Sequence[str]) -> dict[str, list[str]]:
    observed: dict[str, set[str]] = {c: set() for c in containers}
    for pod in pods:
        for name in containers:
            running = pod.container(name)
            if running is not None:
                observed[name].add(_runtime_ref(running.image_id, running.image))
    return {c: sorted(v) for c, v in observed.items()}


def default_containers(expected: ImageRef, d: DeploymentView) -> list[str]:
    """The containers judged when a target names none: those running the expected image's repository
    (a log shipper or an injected proxy is not what the values control). Init containers only by name."""
    return [c for c, image in d.template_images.items() if same_repository(expected, image)]


def _template_mismatch(t: Target, expected: ImageRef, d: DeploymentView, checked: Sequence[str]) -> str | None:
    """Why the pod template does not pin the expected image in every checked container, or None."""
    if not checked:
        found = ", ".join(f"{c}={image}" for c, image in d.template_images.items()) or "none"
        return (
            f"{t.name}: no container of the pod template runs {expected.name} (containers: {found});"
            " name the containers to check with `containers:`"
        )
    template = {**d.template_init_images, **d.template_images}
    missing = [c for c in checked if c not in template]
    if missing:
        return f"{t.name}: no container {', '.join(missing)} in the pod template"
    wrong = [c for c in checked if not template_image_matches(expected, template[c])]
    if wrong:
        return f"{t.name}: pod template runs {template[wrong[0]]} in {wrong[0]}, expected {expected}"
    return None


@dataclass
class TargetFacts:
    """What every target check reads: one Deployment, its ready pods and its rollout, judged against
    the expected image. `notes` and `digests_unverified` collect a pass's caveats."""

    target: Target
    expected: ImageRef
    deployment: DeploymentView
    policy: DigestPolicy | str
    checked: list[str]  # the containers judged
    ready_pods: list[PodView]
    rollout: RolloutState
    notes: list[str] = field(default_factory=list)
    digests_unverified: bool = False


# A check answers what is still wrong (the reason and one line), or None to let the next one judge.
TargetCheck = Callable[[TargetFacts], tuple[Reason, str] | None]


def _template_pins_expected_images(f: TargetFacts) -> tuple[Reason, str] | None:
    mismatch = _template_mismatch(f.target, f.expected, f.deployment, f.checked)
    if mismatch is None:
        return None
    # A stuck rollout of another template (the release being rolled back FROM) is where a rollback
    # starts: only a stuck rollout TO the expected images fails at once.
    if f.rollout.failed:
        mismatch += f" (its rollout {f.rollout.message}; waiting for the rollback to replace it)"
    return Reason.IMAGE_MISMATCH, mismatch


def _rollout_not_stuck(f: TargetFacts) -> tuple[Reason, str] | None:
    return (Reason.PROGRESS_DEADLINE_EXCEEDED, f"{f.target.name}: {f.rollout.message}") if f.rollout.failed else None


def _rollout_complete(f: TargetFacts) -> tuple[Reason, str] | None:
    return None if f.rollout.complete else (Reason.ROLLOUT_TIMEOUT, f"{f.target.name}: {f.rollout.message}")


def _every_available_pod_seen(f: TargetFacts) -> tuple[Reason, str] | None:
    # The pods judged must be the ones the Deployment counts: fewer seen (a lagging pod cache) is
    # "not yet", never a pass on the pods that happen to be seen.
    available, seen = f.deployment.available_replicas, len(f.ready_pods)
    if f.policy == DigestPolicy.SPEC or available <= seen:
        return None
    return (
        Reason.DIGEST_MISMATCH,
        f"{f.target.name}: {seen} ready pods seen of the {available} the Deployment counts available;"
        " waiting to see them all",
    )


def _pods_run_expected_images(f: TargetFacts) -> tuple[Reason, str] | None:
    name, expected = f.target.name, f.expected
    for pod in sorted(f.ready_pods, key=lambda p: p.name):
        for container in f.checked:
            running = pod.container(container)
            if running is None:
                return Reason.IMAGE_MISMATCH, f"{name}: pod {pod.name} has no {container}"
            if not template_image_matches(expected, running.image):
                return (
                    Reason.IMAGE_MISMATCH,
                    f"{name}: pod {pod.name} runs {running.image} in {container}, expected {expected}",
                )
            if f.policy == DigestPolicy.SPEC or expected.digest is None or digest_matches(expected, running.image_id):
                continue
            runtime_digest = digest_from_image_id(running.image_id)
            f.digests_unverified = True
            if runtime_digest is None:
                return (
                    Reason.DIGEST_MISMATCH,
                    f"{name}: pod {pod.name} has not reported the image digest of {container} yet",
                )
            if f.policy == DigestPolicy.STRICT:
                return (
                    Reason.DIGEST_MISMATCH,
                    f"{name}: pod {pod.name} runs digest {runtime_digest} in {container}, expected {expected.digest}",
                )
            # Auto: the spec pins the expected digest; the runtime reports another (index vs platform)
            f.notes.append(
                f"{name}: runtime reports {runtime_digest} for {container} while the spec pins {expected.digest}"
                " (a multi-arch index resolves to a platform manifest digest), so the digest is not verified"
            )
    return None


# In order: the first check that finds something wrong gives the target's problem. A new check is
# one small function of TargetFacts, one entry here and its test.
TARGET_CHECKS: tuple[TargetCheck, ...] = (
    _template_pins_expected_images,
    _rollout_not_stuck,
    _rollout_complete,
    _every_available_pod_seen,
    _pods_run_expected_images,
)


def evaluate_target(inp: TargetInput, policy: DigestPolicy | str) -> TargetEvaluation:
    t, expected, d = inp.target, inp.expected, inp.deployment
    base = TargetStatus(name=t.name, namespace=t.namespace or "")
    if d is None:
        return TargetEvaluation(base, Reason.TARGET_NOT_FOUND, f"Deployment {t.namespace}/{t.name} not found")

    checked = list(t.containers) if t.containers else default_containers(expected, d)
    ready_pods = [p for p in pods_of(d, inp.pods) if p.ready]
    rollout = evaluate_rollout(d)
    status = base.model_copy(
        update={
            "expectedImages": {c: str(expected) for c in checked},
            # What runs, whatever the verdict: the question an SRE asks first.
            "observedImages": _observed(ready_pods, checked),
            "replicas": d.spec_replicas,
            "updatedReplicas": d.updated_replicas,
            "availableReplicas": d.available_replicas,
            "rolloutComplete": rollout.complete,
        }
    )
    facts = TargetFacts(t, expected, d, policy, checked, ready_pods, rollout)
    for check in TARGET_CHECKS:
        found = check(facts)
        if found is not None:
            return _with_message(status, *found)

    notes = facts.notes
    if expected.digest is None:
        notes.append(f"{t.name}: only the tag {expected.tag} is pinned, so the digest cannot be verified")
    elif policy == DigestPolicy.SPEC:
        notes.append(f"{t.name}: digestPolicy Spec checks the pod spec only")
    elif not ready_pods:
        notes.append(f"{t.name}: no pods run (0 replicas); the pod template was checked")
    status.digestsVerified = (
        bool(ready_pods)
        and expected.digest is not None
        and policy != DigestPolicy.SPEC
        and not facts.digests_unverified
    )
    unique_notes = tuple(dict.fromkeys(notes))  # every pod of a target reports the same caveat: say it once
    status.message = "; ".join(unique_notes) or None
    return TargetEvaluation(status, None, f"{t.name}: verified", unique_notes)


def _with_message(status: TargetStatus, problem: Reason, detail: str) -> TargetEvaluation:
    status.message = detail
    return TargetEvaluation(status, problem, detail)


@dataclass(frozen=True)
class ApplicationFacts:
    """The Argo CD Application's state, when the verification names one."""

    health: str | None  # status.health.status; None when the Application was not found
    require_healthy: bool
    orphans: Sequence[OrphanedResource] = ()
    fail_on_orphans: bool = False
    # Argo CD's sync operation is still running: its results (e.g. what it left behind) are not final yet.
    # Never set for a PostSync hook, which runs inside that very operation.
    operation_running: bool = False
    name: str = ""  # namespace/name, for messages


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: Reason | None
    message: str
    targets: list[TargetStatus]
    conditions: list[Condition] = field(default_factory=list)
    orphans: list[OrphanedResource] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED)


def _cond(type_: str, ok: bool, reason: str, message: str = "") -> Condition:
    return Condition(type=type_, status="True" if ok else "False", reason=reason, message=message)


def decide(
    inputs: Sequence[TargetInput],
    policy: DigestPolicy | str,
    application: ApplicationFacts | None,
    deadline_passed: bool,
) -> Verdict:
    return combine([evaluate_target(i, policy) for i in inputs], application, deadline_passed)


def combine(evals: Sequence[TargetEvaluation], application: ApplicationFacts | None, deadline_passed: bool) -> Verdict:
    """The verdict from the targets' evaluations (each a pure function of its own facts, so a caller may
    keep those of targets whose facts did not change) and the Application's facts."""
    problems = [e.problem for e in evals if e.problem is not None]
    app_problem: Reason | None = None
    app_detail = ""
    orphans = list(application.orphans) if application else []
    if application is not None and application.operation_running:
        app_problem = Reason.APPLICATION_UNHEALTHY
        app_detail = "Argo CD's sync operation is still running"
    elif application is not None and application.require_healthy and application.health != HEALTHY:
        app_problem = Reason.APPLICATION_UNHEALTHY
        app_detail = f"the Application {application.name} is {application.health or 'not found'}, not Healthy"
    orphan_problem = bool(application and application.fail_on_orphans and orphans)
    if app_problem:
        problems.append(app_problem)
    if orphan_problem:
        problems.append(Reason.ORPHANED_RESOURCES)

    total = len(evals)
    verified = sum(e.ok for e in evals)
    details = [e.detail for e in evals if not e.ok] + ([app_detail] if app_detail else [])
    if orphan_problem:
        details.append(f"{len(orphans)} resources left behind (requiresPruning): {_orphan_names(orphans)}")
    conditions = _conditions(evals, application, app_problem)

    if not problems:
        notes = [n for e in evals for n in e.notes]
        all_verified = all(e.status.digestsVerified for e in evals)
        how = "digests verified" if all_verified else "digests not all verified: " + "; ".join(notes)
        message = f"{verified}/{total} Deployments run the reverted images ({how})"
        if orphans:
            message += f"; {len(orphans)} resources left behind: {_orphan_names(orphans)}"
        conditions.append(_cond("Ready", True, Reason.VERIFIED.value, message))
        return Verdict(Phase.SUCCEEDED, Reason.VERIFIED, message, [e.status for e in evals], conditions, orphans)

    if deadline_passed or fails_at_once(problems):
        reason = most_fundamental(problems)
        message = "; ".join(details)
        conditions.append(_cond("Ready", False, reason.value, message))
        return Verdict(Phase.FAILED, reason, message, [e.status for e in evals], conditions, orphans)

    message = f"{verified}/{total} Deployments verified; waiting: " + "; ".join(details)
    conditions.append(_cond("Ready", False, "InProgress", message))
    return Verdict(Phase.RUNNING, None, message, [e.status for e in evals], conditions, orphans)


def failed_before_start(reason: Reason, message: str) -> Verdict:
    """A verification that cannot start: values unavailable or a spec the CRD schema could not reject."""
    conditions = [
        _cond("ExpectedImagesResolved", False, reason.value, message),
        _cond("Ready", False, reason.value, message),
    ]
    return Verdict(Phase.FAILED, reason, message, [], conditions)


def _orphan_names(orphans: Iterable[OrphanedResource]) -> str:
    return ", ".join(f"{o.kind}/{o.name}" for o in orphans)


def _conditions(
    evals: Sequence[TargetEvaluation], application: ApplicationFacts | None, app_problem: Reason | None
) -> list[Condition]:
    out = [_cond("ExpectedImagesResolved", True, "Resolved", "expected images resolved for every target")]
    rollout_reasons, image_reasons = shown_in("RolloutComplete"), shown_in("ImagesMatch")
    rollout_problem = next((e for e in evals if e.problem in rollout_reasons), None)
    unfinished = next((e for e in evals if not e.status.rolloutComplete), None)
    if rollout_problem is None and unfinished is not None:
        # A template that does not pin the expected images yet (e.g. the stuck release being rolled back
        # FROM) is judged as a mismatch first; its rollout is still not complete, and the condition says so.
        out.append(_cond("RolloutComplete", False, "RolloutInProgress", unfinished.detail))
    elif rollout_problem is None:
        out.append(_cond("RolloutComplete", True, "RolloutComplete", "every target rolled out"))
    else:
        problem = rollout_problem.problem
        reason = (RULES[problem].condition_reason or problem.value) if problem else "InProgress"
        out.append(_cond("RolloutComplete", False, reason, rollout_problem.detail))
    image_problem = next((e for e in evals if e.problem in image_reasons), None)
    if image_problem is not None and image_problem.problem is not None:
        out.append(_cond("ImagesMatch", False, image_problem.problem.value, image_problem.detail))
    elif all(e.ok for e in evals):
        out.append(_cond("ImagesMatch", True, "ImagesMatch", "every checked container runs the expected image"))
    else:
        out.append(_cond("ImagesMatch", False, "Pending", "waiting for the rollouts before checking pods"))
    if application is not None:
        healthy = app_problem is None
        out.append(
            _cond(
                "ApplicationHealthy",
                healthy if application.require_healthy else application.health == HEALTHY,
                "OperationRunning" if application.operation_running else application.health or "NotFound",
                f"Application {application.name} health: {application.health or 'not found'}"
                + ("; its sync operation is still running" if application.operation_running else ""),
            )
        )
    return out


def merge_conditions(previous: Iterable[Condition], current: Iterable[Condition], now: str) -> list[Condition]:
    """metav1.Condition semantics: lastTransitionTime changes only when status changes."""
    before = {c.type: c for c in previous}
    merged = []
    for c in current:
        old = before.get(c.type)
        since = old.lastTransitionTime if old is not None and old.status == c.status else now
        merged.append(c.model_copy(update={"lastTransitionTime": since or now}))
    return merged
