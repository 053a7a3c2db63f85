"""Managed resources: added (gated or not), removed, renamed, and changed in ways an upgrade or a
rollback cannot apply (immutable fields, shrinking volumes, Service types)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rollback_verifier.lint_chart import gating
from rollback_verifier.lint_chart.model import (
    ChartSnapshot,
    Finding,
    FlagSetting,
    Resource,
    Risk,
)
from rollback_verifier.lint_chart.rules.common import HIGH_IMPACT_KINDS, diff_resources, origin, show, value_at

# `spec.selector` is immutable for these kinds (apps/v1, batch/v1).
SELECTOR_IMMUTABLE_KINDS = frozenset({"DaemonSet", "Deployment", "Job", "ReplicaSet", "StatefulSet"})
# Other fields the API server refuses to change on update.
IMMUTABLE_FIELDS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "StatefulSet": (
        ("spec", "serviceName"),
        ("spec", "podManagementPolicy"),
        ("spec", "volumeClaimTemplates"),
    ),
    "Job": (("spec", "template"), ("spec", "completionMode")),
    "PersistentVolumeClaim": (
        ("spec", "storageClassName"),
        ("spec", "accessModes"),
        ("spec", "volumeMode"),
        ("spec", "volumeName"),
        ("spec", "selector"),
        ("spec", "dataSource"),
        ("spec", "dataSourceRef"),
    ),
    "RoleBinding": (("roleRef",),),
    "ClusterRoleBinding": (("roleRef",),),
    "StorageClass": (("provisioner",), ("parameters",), ("reclaimPolicy",), ("volumeBindingMode",)),
}


def resource_findings(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    diff = diff_resources(old, new)
    findings: list[Finding] = []
    findings += [new_resource_finding(res, new) for res in diff.added]
    findings += [removed_finding(res, old, new) for res in diff.removed]
    findings += [renamed_finding(gone, came) for gone, came in diff.renamed]
    for before, after in diff.common:
        findings += changed_resource_findings(before, after)
    return findings


def _guards(res: Resource, snapshot: ChartSnapshot) -> tuple[gating.Guard, ...]:
    template = snapshot.templates.get(res.source) if res.source else None
    if template is None:
        return ()
    return gating.guards_for(template, res.kind, res.name) or ()


def _flag_defaults(refs: Iterable[gating.ValuesRef], values: Mapping[str, Any]) -> str:
    parts = []
    for ref in refs:
        text = show(gating.lookup(values, ref.path)) if gating.is_set(values, ref.path) else "unset"
        parts.append(f"{ref.dotted} defaults to {text}")
    return ", ".join(parts)


def _guard_text(guards: tuple[gating.Guard, ...]) -> str:
    return " inside ".join(guard.describe() for guard in reversed(guards))


def flag_checks_needed(old: ChartSnapshot, new: ChartSnapshot) -> set[tuple[FlagSetting, ...]]:
    """The flag settings the shell should render the new chart with, to confirm that the guards
    found around new resources really switch them off (see `gating`)."""
    needed: set[tuple[FlagSetting, ...]] = set()
    for res in diff_resources(old, new).added:
        if not new.renders_by_default(res.key):
            continue
        refs = gating.boolean_refs(_guards(res, new), new.values)
        if refs:
            needed.add(gating.disabling_settings(refs))
    return needed


NEW_GATED_MITIGATION = (
    "Rollback-safe as it is: keep the flag defaulting to false and documented; to roll back, switch the flag off first."
)


def new_resource_finding(res: Resource, new: ChartSnapshot) -> Finding:
    """A resource the old version did not render: is it gated behind a values flag defaulting to false?"""
    guards = _guards(res, new)
    where = origin(res)
    if not new.renders_by_default(res.key):
        gate = f"gated by {_guard_text(guards)}" if guards else "gated by the chart's values"
        return Finding(
            "new-resource-gated",
            Risk.LOW,
            res.display(),
            f"new resource{where}, {gate}: off with the chart defaults, switched on by the given values files",
            NEW_GATED_MITIGATION,
            old=None,
            new=[ref.dotted for guard in guards for ref in guard.refs] or None,
        )
    refs = gating.boolean_refs(guards, new.values)
    if refs:
        rendered = new.flag_renders.get(gating.disabling_settings(refs))
        if rendered is not None and res.key in rendered:
            flags = ", ".join(ref.dotted for ref in refs)
            return _ungated(res, f"; switching off {flags} ({_guard_text(guards)}) does not remove it")
    if guards:
        defaults = f" ({_flag_defaults(refs, new.values)})" if refs else ""
        if refs and not any(ref.negated for ref in refs):
            opt_in = "default " + ", ".join(f"`{ref.dotted}: false`" for ref in refs) + " in values.yaml"
        else:  # an `else` branch or a `not`: the guard is a mode switch, not an opt-in flag
            opt_in = "put it behind its own flag (`<feature>.enabled`) defaulting to false"
        return Finding(
            "new-resource-default-on",
            Risk.MEDIUM,
            res.display(),
            f"new resource{where} renders with the chart defaults: its guard {_guard_text(guards)} holds "
            f"with the defaults{defaults}; every upgrade creates it and a rollback that does not prune "
            "leaves it behind",
            f"Make it opt-in: {opt_in}, and document the flag (design: new resources gated behind flags, "
            "default false).",
            old=None,
            new=[ref.dotted for ref in refs] or None,
        )
    return _ungated(res, "")


def _ungated(res: Resource, note: str) -> Finding:
    return Finding(
        "new-resource-ungated",
        Risk.MEDIUM,
        res.display(),
        f"new resource{origin(res)} is not gated by any values flag{note}: it renders with the chart "
        "defaults, so every upgrade creates it and a rollback that does not prune leaves it behind",
        "Wrap its template in `{{- if .Values.<feature>.enabled }}` with the flag defaulting to false "
        "(design: additive changes gated behind flags), or document why it must always exist.",
    )


def _why_gone(res: Resource, old: ChartSnapshot, new: ChartSnapshot) -> str:
    """`its guard ... now defaults ...` when the resource vanished because a flag's default changed."""
    guards = _guards(res, old)
    changed = [
        f"{ref.dotted} {show(gating.lookup(old.values, ref.path))} -> {show(gating.lookup(new.values, ref.path))}"
        for guard in guards
        for ref in guard.refs
        if gating.lookup(old.values, ref.path) != gating.lookup(new.values, ref.path)
    ]
    if not changed:
        return ""
    return f" (its guard {_guard_text(guards)} changed default: {', '.join(changed)})"


def removed_finding(res: Resource, old: ChartSnapshot | None = None, new: ChartSnapshot | None = None) -> Finding:
    """A managed resource the new version no longer renders (old/new: to explain why, when a flag's
    default changed)."""
    high = res.kind in HIGH_IMPACT_KINDS
    why = _why_gone(res, old, new) if old is not None and new is not None else ""
    consequence = (
        "everything that references it (Services, Ingresses, clients, monitors) breaks until a rollback "
        "re-creates it from scratch"
        if high
        else "a rollback re-creates it from scratch"
    )
    if res.kind == "PersistentVolumeClaim":
        consequence += ", and the data in the claim is gone for good"
    if res.kept:
        consequence = "helm keeps it (`helm.sh/resource-policy: keep`), but nothing manages it any more"
    return Finding(
        "resource-removed",
        Risk.HIGH if high else Risk.MEDIUM,
        res.display(),
        f"removed from the chart{origin(res)}{why}: the upgrade deletes it; {consequence}",
        "Keep it for one more release (behind a flag defaulting to its current state, or scaled to 0), "
        "migrate its users, then remove it and document the removal in the upgrade notes.",
        old=res.name,
        new=None,
    )


def renamed_finding(gone: Resource, came: Resource) -> Finding:
    return Finding(
        "resource-renamed",
        Risk.HIGH if gone.kind in HIGH_IMPACT_KINDS else Risk.MEDIUM,
        f"{gone.display()} -> {came.name}",
        f"renamed from {gone.name} to {came.name}{origin(came)}: the upgrade deletes {gone.name} and creates "
        f"{came.name}, references to the old name break, and a rollback that does not prune leaves "
        f"{came.name} running next to the re-created {gone.name}",
        "Avoid renames (design: 'avoid renaming resources unless a migration plan exists'); if required, "
        "ship both names for one release (dual-write period) with a migration doc, then drop the old one.",
        old=gone.name,
        new=came.name,
    )


_QUANTITY = re.compile(r"^\s*([0-9.]+)\s*([A-Za-z]*)\s*$")
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes storage quantity (`10Gi`, `500M`, `1e3`-free) in bytes, or None."""
    match = _QUANTITY.match(str(value)) if value is not None else None
    if not match or match.group(2) not in _UNITS:
        return None
    try:
        return float(match.group(1)) * _UNITS[match.group(2)]
    except ValueError:
        return None


IMMUTABLE_MITIGATION = (
    "Keep the field stable. If it must change, create the resource under a new name (with a migration "
    "plan) or plan a deliberate delete-and-recreate, and document that a rollback needs the same."
)


def _immutable(res: Resource, field_name: str, old: Any, new: Any, why: str = "") -> Finding:
    return Finding(
        "immutable-field-changed",
        Risk.HIGH,
        res.display(),
        f"{field_name} changed ({show(old, 40)} -> {show(new, 40)}), but it is immutable for a "
        f"{res.kind}{why}: the API server rejects the update, so the upgrade fails, and after a "
        "delete-and-recreate the rollback's apply fails the same way",
        IMMUTABLE_MITIGATION,
        old=old,
        new=new,
    )


def changed_resource_findings(before: Resource, after: Resource) -> list[Finding]:
    """Changes to one resource present in both versions: API version, immutable fields."""
    findings: list[Finding] = []
    if before.api_version != after.api_version:
        findings.append(
            Finding(
                "api-version-changed",
                Risk.LOW,
                after.display(),
                f"apiVersion changed {before.api_version} -> {after.api_version}: a rollback re-applies "
                f"{before.api_version}, which fails on a cluster that no longer serves it",
                "Check that every cluster you may roll back on still serves the old apiVersion; "
                "otherwise pin the new apiVersion in the previous chart release too.",
                old=before.api_version,
                new=after.api_version,
            )
        )
    kind = after.kind
    if kind in SELECTOR_IMMUTABLE_KINDS:
        old_selector = value_at(before.body, ("spec", "selector"))
        new_selector = value_at(after.body, ("spec", "selector"))
        if old_selector != new_selector:
            findings.append(
                Finding(
                    "selector-changed",
                    Risk.HIGH,
                    after.display(),
                    f"spec.selector changed ({show(old_selector, 50)} -> {show(new_selector, 50)}): it "
                    f"is immutable for a {kind}, so the upgrade's apply is rejected, and a rollback after "
                    "a delete-and-recreate is rejected the same way (old pods are orphaned meanwhile)",
                    "Keep selectors stable (design: 'keep selectors stable'); add new labels to the pod "
                    "template only. If the selector must change, deploy under a new name and retire the old "
                    "one in a later release, with a migration plan.",
                    old=old_selector,
                    new=new_selector,
                )
            )
    for path in IMMUTABLE_FIELDS.get(kind, ()):
        old_value, new_value = value_at(before.body, path), value_at(after.body, path)
        if old_value != new_value:
            findings.append(_immutable(after, ".".join(path), old_value, new_value))
    if kind == "PersistentVolumeClaim":
        findings += _pvc_size(before, after)
    if kind == "Service":
        findings += _service_changes(before, after)
    if kind in ("ConfigMap", "Secret"):
        findings += _immutable_data(before, after)
    return findings


def _pvc_size(before: Resource, after: Resource) -> list[Finding]:
    path = ("spec", "resources", "requests", "storage")
    old_size, new_size = value_at(before.body, path), value_at(after.body, path)
    if old_size == new_size or old_size is None or new_size is None:
        return []
    old_bytes, new_bytes = parse_quantity(old_size), parse_quantity(new_size)
    if old_bytes is not None and new_bytes is not None and old_bytes == new_bytes:
        return []
    if old_bytes is not None and new_bytes is not None and new_bytes > old_bytes:
        return [
            Finding(
                "immutable-field-changed",
                Risk.HIGH,
                after.display(),
                f"spec.resources.requests.storage grows {old_size} -> {new_size}: a claim can grow but never "
                f"shrink, so the rollback's apply of {old_size} is rejected",
                "Grow claims outside the chart (or keep the old size in the previous release too), and "
                "document that the size cannot be rolled back.",
                old=old_size,
                new=new_size,
            )
        ]
    return [_immutable(after, "spec.resources.requests.storage", old_size, new_size, " when it shrinks")]


def _service_changes(before: Resource, after: Resource) -> list[Finding]:
    findings: list[Finding] = []
    old_ip = value_at(before.body, ("spec", "clusterIP")) or None
    new_ip = value_at(after.body, ("spec", "clusterIP")) or None
    if old_ip != new_ip:
        findings.append(_immutable(after, "spec.clusterIP", old_ip, new_ip, " once allocated"))
    old_type = value_at(before.body, ("spec", "type")) or "ClusterIP"
    new_type = value_at(after.body, ("spec", "type")) or "ClusterIP"
    if (old_type == "ExternalName") != (new_type == "ExternalName"):
        findings.append(
            _immutable(after, "spec.type", old_type, new_type, " across ExternalName (it has no cluster IP)")
        )
    return findings


def _immutable_data(before: Resource, after: Resource) -> list[Finding]:
    old_immutable = bool(before.body.get("immutable"))
    new_immutable = bool(after.body.get("immutable"))
    if not (old_immutable or new_immutable):
        return []
    content = ("data", "binaryData", "stringData")
    old_content = {key: before.body.get(key) for key in content}
    new_content = {key: after.body.get(key) for key in content}
    mitigation = (
        f"Give an immutable {after.kind} a content-hash name suffix (a new object per version), so both "
        "versions exist side by side and a rollback simply points back to the old one."
    )
    if old_content != new_content:
        message = (
            f"immutable {after.kind} has new content: the API server rejects any change to it, so the "
            "upgrade fails (and so would the rollback's apply)"
        )
    elif old_immutable and not new_immutable:
        message = "`immutable: true` removed: an immutable object cannot become mutable, the upgrade fails"
    elif new_immutable and not old_immutable:
        message = "now `immutable: true`: once upgraded it cannot become mutable again, so the rollback's apply fails"
    else:
        return []
    return [
        Finding(
            "immutable-field-changed",
            Risk.HIGH,
            after.display(),
            message,
            mitigation,
            old={"immutable": old_immutable, **old_content},
            new={"immutable": new_immutable, **new_content},
        )
    ]
