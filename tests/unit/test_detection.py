"""Rollback detection on plain Application histories."""

from __future__ import annotations

import pytest

from rollback_verifier.api.models import DetectedBy
from rollback_verifier.api.settings import WatchedApplication
from rollback_verifier.core.detection import (
    STRATEGIES,
    HistoryEntry,
    Lookups,
    by_ancestry,
    by_content,
    by_history,
    history_entries,
    to_examine,
    verification_manifest,
    verification_name,
)


def app(*revisions: str | list[str], start_id: int = 0, deployed_at: str = "2026-11-26T10:00:00Z") -> dict:
    history = []
    for i, rev in enumerate(revisions):
        entry = {"id": start_id + i, "deployedAt": deployed_at, "source": {"repoURL": "file:///gitops"}}
        entry["revisions" if isinstance(rev, list) else "revision"] = rev
        history.append(entry)
    return {"metadata": {"name": "agents", "namespace": "argocd", "uid": "u1"}, "status": {"history": history}}


def newest(*revisions: str | list[str]) -> tuple[list[HistoryEntry], int]:
    entries = history_entries(app(*revisions))
    return entries, len(entries) - 1


@pytest.mark.parametrize(
    ("revisions", "rolled_back"),
    [
        (["r1", "r2", "r1"], True),  # argocd app rollback
        (["r1", "r2", "r3", "r2"], True),  # back one step, further down the history
        (["r1", "r2"], False),  # a forward sync
        (["r1", "r2", "r2"], False),  # the same revision synced twice
        (["r1"], False),  # nothing to compare with
        (["r1", "r2", "r1", "r1"], False),  # a resync after a rollback is not a second rollback
        (["r1", "r2", "r1", "r2"], True),  # the contract's literal rule: back to r2 equals an older entry
    ],
)
def test_argocd_history(revisions: list[str], rolled_back: bool) -> None:
    entries, i = newest(*revisions)
    found = by_history(entries, i)
    assert (found is not None) is rolled_back
    if found:
        assert found.detected_by == DetectedBy.ARGOCD_HISTORY
        assert (found.entry.revision, found.previous.revision) == (revisions[-1], revisions[-2])


def test_multi_source_histories_compare_all_revisions() -> None:
    entries, i = newest(["a1", "b1"], ["a2", "b1"], ["a1", "b1"])
    found = by_history(entries, i)
    assert found is not None and found.entry.revision == "a1,b1"
    # Ancestry needs one revision per entry: a multi-source history is left to the other strategies.
    assert by_ancestry(entries, i, lambda older, newer: True) is None


def test_revision_ancestry_uses_git_answers() -> None:
    entries, i = newest("r1", "r3")  # git says r3 is an ancestor of r1: the sync went back in history
    graph = {("r3", "r1"): True}
    found = by_ancestry(entries, i, lambda older, newer: graph.get((older, newer), False))
    assert found is not None and found.detected_by == DetectedBy.REVISION_ANCESTRY
    assert by_ancestry(entries, i, lambda older, newer: False) is None
    assert by_ancestry(entries, i, lambda older, newer: None) is None  # git could not tell


def test_content_revert_compares_resolved_images() -> None:
    images = {"r1": ("A",), "r2": ("B",), "r3": ("A",), "r4": ("C",)}
    entries, i = newest("r1", "r2", "r3")  # r3 is a `git revert` of r2: new SHA, old images
    found = by_content(entries, i, lambda e: images[e.revision])
    assert found is not None and found.detected_by == DetectedBy.CONTENT_REVERT
    entries, i = newest("r1", "r2", "r4")  # forward to new images
    assert by_content(entries, i, lambda e: images[e.revision]) is None
    entries, i = newest("r1", "r2", "r3")
    assert by_content(entries, i, lambda e: None if e.revision == "r1" else images[e.revision]) is None


def test_content_revert_needs_the_images_to_differ_from_the_previous_entry() -> None:
    images = {"r1": ("A",), "r2": ("A",), "r3": ("A",)}  # a values change that touched no image
    entries, i = newest("r1", "r2", "r3")
    assert by_content(entries, i, lambda e: images[e.revision]) is None


def test_history_parsing_skips_malformed_entries() -> None:
    raw = app("r1", "r2")
    raw["status"]["history"] += [{"id": "x", "revision": "r3"}, {"id": 9}, "junk", {"id": True, "revision": "r4"}]
    assert [e.id for e in history_entries(raw)] == [0, 1]
    assert history_entries({}) == [] and history_entries({"status": {"history": None}}) == []


def test_to_examine_skips_decided_and_old_entries() -> None:
    entries = history_entries(app("r1", "r2", "r1"))
    deployed = entries[0].deployed_at or 0
    assert to_examine(entries, set(), deployed + 10, 3600) == [0, 1, 2]
    assert to_examine(entries, {0, 1}, deployed + 10, 3600) == [2]
    assert to_examine(entries, set(), deployed + 7200, 3600) == []


def test_truncated_history_never_makes_an_old_entry_a_rollback() -> None:
    # Entry 12 (r1) was a rollback while r1 was still in history; after truncation it cannot be re-judged
    # as one unless its predecessor and an older match are still there.
    entries = history_entries(app("r1", "r2", start_id=11))
    assert by_history(entries, 0) is None and by_history(entries, 1) is None


def test_the_verification_is_named_after_the_history_id_and_carries_the_settings() -> None:
    assert verification_name("agents", 42) == "agents-rollback-42"
    assert verification_name("My_App", 1) == "my-app-rollback-1"
    assert len(verification_name("a" * 300, 123456)) <= 253
    entries, i = newest("r1", "r2", "r1")
    rollback = by_history(entries, i)
    assert rollback is not None
    manifest = verification_manifest(WatchedApplication(name="agents", timeoutSeconds=300), rollback, "argocd")
    assert manifest["metadata"]["name"] == "agents-rollback-2"
    assert manifest["metadata"]["namespace"] == "agents"
    assert manifest["metadata"]["labels"] == {
        "gitops.proompteng.ai/application": "agents",
        "gitops.proompteng.ai/detected-by": "ArgoCDHistory",
        "gitops.proompteng.ai/history-id": "2",
    }
    spec = manifest["spec"]
    assert (spec["revision"], spec["fromRevision"], spec["timeoutSeconds"]) == ("r1", "r2", 300)
    assert spec["application"] == {"name": "agents", "namespace": "argocd"}
    assert spec["valuesFrom"] == {"git": {"path": "argocd/applications/agents/values.yaml"}}
    assert [t["name"] for t in spec["targets"]] == ["agents", "agents-controllers"]


# -- retention ---------------------------------------------------------------------------------


def _rbv(name: str, created: str, phase: str | None, detected_by: str | None = "ArgoCDHistory") -> dict:
    from rollback_verifier.core.detection import APPLICATION_LABEL, DETECTED_BY_LABEL

    labels = {APPLICATION_LABEL: "agents"}
    if detected_by is not None:
        labels[DETECTED_BY_LABEL] = detected_by
    status = {"phase": phase} if phase else {}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created, "labels": labels},
        "status": status,
    }


def test_detected_verifications_beyond_the_limit_are_pruned_oldest_first_finished_only() -> None:
    from rollback_verifier.core.detection import verifications_to_prune

    items = [
        _rbv("r5", "2026-01-05T00:00:00Z", None),  # newest, still running
        _rbv("r4", "2026-01-04T00:00:00Z", "Succeeded"),
        _rbv("r3", "2026-01-03T00:00:00Z", "Failed"),
        _rbv("r2", "2026-01-02T00:00:00Z", "Running"),  # beyond the limit but running: kept for now
        _rbv("r1", "2026-01-01T00:00:00Z", "Succeeded"),
        _rbv("manual", "2025-01-01T00:00:00Z", "Succeeded", detected_by=None),
        _rbv("labelled-manual", "2025-01-01T00:00:00Z", "Succeeded", detected_by="Manual"),
    ]
    assert verifications_to_prune(items, 2) == [("r3", "uid-r3"), ("r1", "uid-r1")]
    assert verifications_to_prune(items, 10) == []


def test_the_history_limit_defaults_to_argo_cds_ten() -> None:
    from rollback_verifier.api.settings import WatchedApplication

    assert WatchedApplication(name="agents").historyLimit == 10


def test_strategies_are_walked_cheapest_first_and_the_git_ones_are_marked() -> None:
    assert [s.detected_by for s in STRATEGIES] == [
        DetectedBy.ARGOCD_HISTORY,
        DetectedBy.REVISION_ANCESTRY,
        DetectedBy.CONTENT_REVERT,
    ]
    assert [s.reads_git for s in STRATEGIES] == [False, True, True]


def test_each_strategy_in_the_table_names_what_it_found_and_needs_its_lookup() -> None:
    images = {"r1": ("A",), "r2": ("B",), "r3": ("A",)}
    cases = {
        DetectedBy.ARGOCD_HISTORY: newest("r1", "r2", "r1"),
        DetectedBy.REVISION_ANCESTRY: newest("r1", "r3"),
        DetectedBy.CONTENT_REVERT: newest("r1", "r2", "r3"),
    }
    lookups = Lookups(
        is_ancestor=lambda older, newer: (older, newer) == ("r3", "r1"), images_of=lambda e: images[e.revision]
    )
    for strategy in STRATEGIES:
        entries, i = cases[strategy.detected_by]
        found = strategy.judge(entries, i, lookups)
        assert found is not None and found.detected_by == strategy.detected_by
        if strategy.reads_git:  # without git there is no answer, never a guess
            assert strategy.judge(entries, i, Lookups()) is None
