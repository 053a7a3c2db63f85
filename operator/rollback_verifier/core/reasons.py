"""Every failure reason of a verification as one table: its rank, the condition that shows it, and
whether it fails at once or only when the deadline passes. Adding a reason is its value in
api/models.py's `Reason` (the CRD follows with `make crds`), one row here and its test.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from rollback_verifier.api.models import Reason


@dataclass(frozen=True)
class ReasonRule:
    reason: Reason
    # The condition type whose status=False carries this reason (None: only the Ready condition).
    condition: str | None
    # True: the verification fails as soon as this is seen; False: only if still so at the deadline.
    fails_at_once: bool = False
    # What the condition says while the deadline has not passed, when that is not the reason itself.
    condition_reason: str | None = None


# Ranked: when several things are wrong at the deadline, the verdict's reason is the first that
# applies, the most fundamental cause first (a missing Deployment explains everything after it).
REASONS: tuple[ReasonRule, ...] = (
    # No facts at all: the destination cluster stays unreachable until the deadline (a destination
    # that does not exist fails before any target is judged, through verdict.failed_before_start).
    ReasonRule(Reason.CLUSTER_UNREACHABLE, "ExpectedImagesResolved"),
    ReasonRule(Reason.TARGET_NOT_FOUND, "RolloutComplete"),
    # A stuck rollout TO the expected images (the template pins them) cannot recover by waiting.
    ReasonRule(Reason.PROGRESS_DEADLINE_EXCEEDED, "RolloutComplete", fails_at_once=True),
    ReasonRule(Reason.IMAGE_MISMATCH, "ImagesMatch"),
    ReasonRule(Reason.ROLLOUT_TIMEOUT, "RolloutComplete", condition_reason="RolloutInProgress"),
    ReasonRule(Reason.DIGEST_MISMATCH, "ImagesMatch"),
    ReasonRule(Reason.APPLICATION_UNHEALTHY, "ApplicationHealthy"),
    ReasonRule(Reason.ORPHANED_RESOURCES, None),
    # Before any target is judged: the expected images cannot be known (verdict.failed_before_start).
    ReasonRule(Reason.VALUES_UNAVAILABLE, "ExpectedImagesResolved", fails_at_once=True),
    ReasonRule(Reason.INVALID_SPEC, "ExpectedImagesResolved", fails_at_once=True),
)

RULES: dict[Reason, ReasonRule] = {r.reason: r for r in REASONS}


def most_fundamental(problems: set[Reason] | list[Reason]) -> Reason:
    """The highest-ranked of `problems` (not empty)."""
    return next(r.reason for r in REASONS if r.reason in problems)


def fails_at_once(problems: set[Reason] | list[Reason]) -> bool:
    return any(RULES[p].fails_at_once for p in problems)


@cache  # REASONS is fixed: asked once per condition per verdict, not once per target
def shown_in(condition: str) -> frozenset[Reason]:
    """The reasons the condition `condition` reports."""
    return frozenset(r.reason for r in REASONS if r.condition == condition)
