"""Rollback detection: does an Argo CD Application's newest sync go backward? Pure functions of the
Application's history (plus, for two strategies, a git ancestry test and an images-at-revision lookup
passed in as plain callables). See api.md "Detection" and argocd-behaviour.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback_verifier import LABEL_PREFIX
from rollback_verifier.api.models import DetectedBy
from rollback_verifier.api.settings import WatchedApplication
from rollback_verifier.core.plain import parse_time_or_none

APPLICATION_LABEL = f"{LABEL_PREFIX}application"
DETECTED_BY_LABEL = f"{LABEL_PREFIX}detected-by"
HISTORY_ID_LABEL = f"{LABEL_PREFIX}history-id"


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    revisions: tuple[str, ...]  # one per source (a single-source app has one)
    deployed_at: float | None
    source: Mapping[str, Any]

    @property
    def revision(self) -> str:
        return ",".join(self.revisions)


def history_entries(application: Mapping[str, Any]) -> list[HistoryEntry]:
    """status.history as entries, oldest first; malformed entries are skipped, never fatal."""
    out = []
    for raw in (application.get("status") or {}).get("history") or ():
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), int) or isinstance(raw.get("id"), bool):
            continue
        if raw.get("revision"):
            revisions: tuple[str, ...] = (str(raw["revision"]),)
        elif isinstance(raw.get("revisions"), list) and raw["revisions"]:
            revisions = tuple(str(r) for r in raw["revisions"])  # multi-source
        else:
            continue
        source = raw.get("source") if isinstance(raw.get("source"), Mapping) else {}
        out.append(HistoryEntry(raw["id"], revisions, parse_time_or_none(raw.get("deployedAt")), source or {}))
    return sorted(out, key=lambda e: e.id)


@dataclass(frozen=True)
class Rollback:
    entry: HistoryEntry  # the sync that went backward
    previous: HistoryEntry  # the entry before it (rolled back FROM)
    detected_by: DetectedBy


def by_history(entries: Sequence[HistoryEntry], index: int) -> Rollback | None:
    """ArgoCDHistory: the entry's revision equals an older entry's and differs from the one before it."""
    if index < 1:
        return None
    entry, previous = entries[index], entries[index - 1]
    if entry.revisions == previous.revisions:
        return None
    if any(e.revisions == entry.revisions for e in entries[: index - 1]):
        return Rollback(entry, previous, DetectedBy.ARGOCD_HISTORY)
    return None


def by_ancestry(
    entries: Sequence[HistoryEntry], index: int, is_ancestor: Callable[[str, str], bool | None]
) -> Rollback | None:
    """RevisionAncestry: the new revision is a (strict) ancestor of the previous one in git.
    `is_ancestor(older, newer)` answers None when git cannot tell (unknown revision, no access)."""
    if index < 1:
        return None
    entry, previous = entries[index], entries[index - 1]
    if len(entry.revisions) != 1 or entry.revisions == previous.revisions or len(previous.revisions) != 1:
        return None
    if is_ancestor(entry.revision, previous.revision):
        return Rollback(entry, previous, DetectedBy.REVISION_ANCESTRY)
    return None


Images = tuple[str, ...]


def by_content(
    entries: Sequence[HistoryEntry], index: int, images_of: Callable[[HistoryEntry], Images | None]
) -> Rollback | None:
    """ContentRevert: a new revision whose resolved images equal an older entry's and differ from the
    previous entry's (a `git revert` commit). `images_of` answers None when they cannot be resolved."""
    if index < 2:
        return None
    entry, previous = entries[index], entries[index - 1]
    if entry.revisions == previous.revisions:
        return None
    now, before = images_of(entry), images_of(previous)
    if now is None or before is None or now == before:
        return None
    if any(images_of(e) == now for e in entries[: index - 1]):
        return Rollback(entry, previous, DetectedBy.CONTENT_REVERT)
    return None


@dataclass(frozen=True)
class Lookups:
    """What the git-backed strategies may ask; None when it cannot be asked (no repository, no reader)."""

    is_ancestor: Callable[[str, str], bool | None] | None = None
    images_of: Callable[[HistoryEntry], Images | None] | None = None


@dataclass(frozen=True)
class Strategy:
    detected_by: DetectedBy
    judge: Callable[[Sequence[HistoryEntry], int, Lookups], Rollback | None]
    # Its lookups read git: the detector runs it in the git pool, after the cheaper strategies.
    reads_git: bool


def _by_history(entries: Sequence[HistoryEntry], index: int, _: Lookups) -> Rollback | None:
    return by_history(entries, index)


def _by_ancestry(entries: Sequence[HistoryEntry], index: int, lookups: Lookups) -> Rollback | None:
    return by_ancestry(entries, index, lookups.is_ancestor) if lookups.is_ancestor else None


def _by_content(entries: Sequence[HistoryEntry], index: int, lookups: Lookups) -> Rollback | None:
    return by_content(entries, index, lookups.images_of) if lookups.images_of else None


# Walked in order; the first that finds a rollback names it (DetectedBy). A new strategy is a pure
# function of the history (plus lookups) and one entry here.
STRATEGIES: tuple[Strategy, ...] = (
    Strategy(DetectedBy.ARGOCD_HISTORY, _by_history, reads_git=False),
    Strategy(DetectedBy.REVISION_ANCESTRY, _by_ancestry, reads_git=True),
    Strategy(DetectedBy.CONTENT_REVERT, _by_content, reads_git=True),
)


def to_examine(entries: Sequence[HistoryEntry], decided: set[int], now: float, lookback_seconds: float) -> list[int]:
    """Indexes of entries not decided yet and deployed within the lookback window. The window keeps an
    operator that was down from re-judging old history; `decided` keeps repeated events cheap. History
    truncation only removes older entries, which can only make a rollback undetectable, never new."""
    return [
        i
        for i, e in enumerate(entries)
        if e.id not in decided and (e.deployed_at is None or e.deployed_at >= now - lookback_seconds)
    ]


def verifications_to_prune(items: Sequence[Mapping[str, Any]], limit: int) -> list[tuple[str, str]]:
    """(name, uid) of the detected verifications of one Application beyond the newest `limit`, finished
    ones only (a running one is left to reach its verdict). Manual ones are never pruned."""
    detected = [
        i
        for i in items
        if ((i.get("metadata") or {}).get("labels") or {}).get(DETECTED_BY_LABEL) not in (None, DetectedBy.MANUAL.value)
    ]
    detected.sort(
        key=lambda i: (str(i["metadata"].get("creationTimestamp") or ""), str(i["metadata"].get("name"))),
        reverse=True,
    )
    return [
        (str(i["metadata"]["name"]), str(i["metadata"].get("uid")))
        for i in detected[limit:]
        if ((i.get("status") or {}).get("phase")) in ("Succeeded", "Failed")
    ]


def verification_name(application: str, entry_id: int) -> str:
    """<application>-rollback-<history id>: the same rollback always maps to the same object."""
    suffix = f"-rollback-{entry_id}"
    base = re.sub(r"[^a-z0-9-]", "-", application.lower())[: 253 - len(suffix)].strip("-")
    return base + suffix


def verification_manifest(
    watched: WatchedApplication, rollback: Rollback, application_namespace: str
) -> dict[str, Any]:
    """The RollbackVerification a detected rollback gets."""
    spec: dict[str, Any] = {
        "application": {"name": watched.name, "namespace": application_namespace},
        "revision": rollback.entry.revision,
        "fromRevision": rollback.previous.revision,
        "valuesFrom": watched.valuesFrom.model_dump(exclude_none=True),
        "targets": [t.model_dump(exclude_none=True) for t in watched.targets],
        "timeoutSeconds": watched.timeoutSeconds,
        "requireApplicationHealthy": watched.requireApplicationHealthy,
        "failOnOrphans": watched.failOnOrphans,
    }
    return {
        "apiVersion": "gitops.proompteng.ai/v1alpha1",
        "kind": "RollbackVerification",
        "metadata": {
            "name": verification_name(watched.name, rollback.entry.id),
            "namespace": watched.verificationNamespace,
            "labels": {
                APPLICATION_LABEL: watched.name,
                DETECTED_BY_LABEL: rollback.detected_by.value,
                HISTORY_ID_LABEL: str(rollback.entry.id),
            },
        },
        "spec": spec,
    }
