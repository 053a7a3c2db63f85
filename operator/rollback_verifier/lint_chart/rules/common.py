"""What every rule family shares: reading manifests, the kinds that matter, the resource diff."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollback_verifier.lint_chart.model import (
    CRD_KIND,
    ChartSnapshot,
    CrdDoc,
    Resource,
    ResourceKey,
)

# Kinds whose removal or rename breaks running traffic or data: high. Other kinds: medium.
HIGH_IMPACT_KINDS = frozenset(
    {
        "CronJob",
        "DaemonSet",
        "Deployment",
        "Ingress",
        "Job",
        "PersistentVolumeClaim",
        "Pod",
        "ReplicaSet",
        "ReplicationController",
        "Service",
        "StatefulSet",
    }
)


def value_at(body: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = body
    for segment in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(segment)
    return node


def show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def origin(resource: Resource) -> str:
    return f" (from {resource.source})" if resource.source else ""


def managed(snapshot: ChartSnapshot) -> dict[ResourceKey, Resource]:
    """The resources helm tracks in the release: everything rendered that is not a hook."""
    return {key: res for key, res in snapshot.by_key().items() if not res.is_hook}


def hook_resources(snapshot: ChartSnapshot) -> dict[ResourceKey, Resource]:
    return {key: res for key, res in snapshot.by_key().items() if res.is_hook}


def _selector(resource: Resource) -> str | None:
    selector = value_at(resource.body, ("spec", "selector"))
    return json.dumps(selector, sort_keys=True) if selector else None


def all_crds(snapshot: ChartSnapshot) -> dict[str, CrdDoc]:
    crds = {crd.name: crd for crd in snapshot.crds}
    for res in snapshot.resources:
        if res.kind == CRD_KIND and not res.is_hook:
            crds[res.name] = CrdDoc(res.name, "templates", res.body, res.source or "")
    return crds


@dataclass
class ResourceDiff:
    """The managed (non-hook) resources of two versions, matched up."""

    removed: list[Resource] = field(default_factory=list)
    added: list[Resource] = field(default_factory=list)
    renamed: list[tuple[Resource, Resource]] = field(default_factory=list)
    common: list[tuple[Resource, Resource]] = field(default_factory=list)


def diff_resources(old: ChartSnapshot, new: ChartSnapshot) -> ResourceDiff:
    """Match resources by identity; pair a removed and an added one of the same kind as a rename
    when they share a non-empty `spec.selector`, or when each is the only one of its kind that
    left/arrived in the same template file. CRDs are left to the CRD rules, except that a CRD new in
    templates/ (and not merely moved there from crds/) is an added resource like any other."""
    old_managed, new_managed = managed(old), managed(new)
    new_hooks = hook_resources(new)
    old_crd_names = set(all_crds(old))
    diff = ResourceDiff()
    for key in sorted(old_managed):
        res = old_managed[key]
        if res.kind == CRD_KIND:
            continue
        if key in new_managed:
            diff.common.append((res, new_managed[key]))
        elif key not in new_hooks:  # turned into a hook: the hook rule reports it
            diff.removed.append(res)
    for key in sorted(new_managed):
        res = new_managed[key]
        if key in old_managed or (res.kind == CRD_KIND and res.name in old_crd_names):
            continue
        diff.added.append(res)

    def family(res: Resource) -> tuple[str, str, str]:
        return res.key.group, res.key.kind, res.key.namespace

    for gone in list(diff.removed):
        if gone.kind == CRD_KIND:
            continue
        candidates = [res for res in diff.added if family(res) == family(gone)]
        match = None
        selector = _selector(gone)
        if selector:
            same = [res for res in candidates if _selector(res) == selector]
            match = same[0] if len(same) == 1 else None
        if match is None and gone.source:
            same_source = [res for res in candidates if res.source == gone.source]
            siblings = [res for res in diff.removed if family(res) == family(gone) and res.source == gone.source]
            match = same_source[0] if len(same_source) == 1 and len(siblings) == 1 else None
        if match is not None:
            diff.renamed.append((gone, match))
            diff.removed.remove(gone)
            diff.added.remove(match)
    return diff
