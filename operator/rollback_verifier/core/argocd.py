"""What an Argo CD Application says about a sync, as pure functions of the object
(field meanings: docs/argocd-behaviour.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rollback_verifier.api.models import OrphanedResource

PRUNE_SKIPPED = "PruneSkipped"


def _orphan(r: Mapping[str, Any]) -> OrphanedResource:
    return OrphanedResource(
        group=str(r.get("group") or ""),
        kind=str(r.get("kind") or ""),
        namespace=str(r.get("namespace") or ""),
        name=str(r.get("name") or ""),
    )


def orphans_of(application: Mapping[str, Any] | None, revision: str | None = None) -> list[OrphanedResource]:
    """Resources a sync left behind: live, but no longer in the desired state. Argo CD says so in two places:
    `status.resources[].requiresPruning` (compared with the branch head) and, for the last operation,
    `syncResult.resources[]` with status PruneSkipped — the only trace after `argocd app rollback`, whose
    target is not the branch head (types.go ResourceResults.PruningRequired). The operation's results
    count only when it synced `revision` (when given)."""
    status = (application or {}).get("status") or {}
    found: dict[tuple[str, str, str, str], OrphanedResource] = {}

    def add(resources: Iterable[Any], keep: str) -> None:
        for r in resources:
            if isinstance(r, Mapping) and (r.get("requiresPruning") if keep == "flag" else r.get("status") == keep):
                o = _orphan(r)
                found.setdefault((o.group, o.kind, o.namespace, o.name), o)

    add(status.get("resources") or (), "flag")
    result = (status.get("operationState") or {}).get("syncResult") or {}
    if revision is None or result.get("revision") == revision:
        add(result.get("resources") or (), PRUNE_SKIPPED)
    return sorted(found.values(), key=lambda o: (o.namespace, o.kind, o.name))


def application_health(application: Mapping[str, Any] | None) -> str | None:
    """status.health.status; None when there is no Application, Unknown when it has no health yet."""
    if application is None:
        return None
    health = ((application.get("status") or {}).get("health") or {}).get("status")
    return str(health) if health else "Unknown"


def operation_running(application: Mapping[str, Any] | None) -> bool:
    """A sync operation is requested or in progress (`.operation` set, or operationState Running/Terminating)."""
    if not application:
        return False
    phase = ((application.get("status") or {}).get("operationState") or {}).get("phase")
    return bool(application.get("operation")) or phase in ("Running", "Terminating")
