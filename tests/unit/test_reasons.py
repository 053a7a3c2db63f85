"""The reasons table: one row per failure reason, ranked, each shown by one condition."""

from rollback_verifier.api.models import Reason
from rollback_verifier.core.reasons import REASONS, fails_at_once, most_fundamental, shown_in


def test_every_failure_reason_has_exactly_one_row() -> None:
    rows = [r.reason for r in REASONS]
    assert sorted(rows) == sorted(r for r in Reason if r is not Reason.VERIFIED)


def test_the_most_fundamental_cause_wins_at_the_deadline() -> None:
    assert most_fundamental([Reason.DIGEST_MISMATCH, Reason.TARGET_NOT_FOUND]) is Reason.TARGET_NOT_FOUND
    assert most_fundamental({Reason.ROLLOUT_TIMEOUT, Reason.IMAGE_MISMATCH}) is Reason.IMAGE_MISMATCH
    assert most_fundamental([Reason.ORPHANED_RESOURCES, Reason.APPLICATION_UNHEALTHY]) is Reason.APPLICATION_UNHEALTHY


def test_only_a_stuck_rollout_and_unknowable_expectations_fail_before_the_deadline() -> None:
    at_once = {r.reason for r in REASONS if fails_at_once([r.reason])}
    assert at_once == {Reason.PROGRESS_DEADLINE_EXCEEDED, Reason.VALUES_UNAVAILABLE, Reason.INVALID_SPEC}


def test_each_condition_reports_its_own_reasons() -> None:
    assert shown_in("RolloutComplete") == {
        Reason.TARGET_NOT_FOUND,
        Reason.PROGRESS_DEADLINE_EXCEEDED,
        Reason.ROLLOUT_TIMEOUT,
    }
    assert shown_in("ImagesMatch") == {Reason.IMAGE_MISMATCH, Reason.DIGEST_MISMATCH}
