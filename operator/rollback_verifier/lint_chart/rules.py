"""The rollback-safety rules: two rendered chart versions in, a list of findings out.

Pure functions, no helm, no git, no files. `lint(old, new)` runs every rule; each rule is also
callable on its own (the unit tests do). The rule names, risks and mitigations are documented in
docs/lint-chart.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollback_verifier.lint_chart import gating
from rollback_verifier.lint_chart.model import (
    CRD_KIND,
    ChartSnapshot,
    CrdDoc,
    Finding,
    FlagSetting,
    Resource,
    ResourceKey,
    Risk,
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
UPGRADE_HOOKS = frozenset({"pre-upgrade", "post-upgrade"})


def lint(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    """Every finding for the change from `old` to `new`, most risky first."""
    findings = [
        *resource_findings(old, new),
        *hook_findings(old, new),
        *crd_findings(old, new),
        *default_value_findings(old.values, new.values, new.user_values),
    ]
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.risk, f.rule, f.resource, f.message))


def failing(findings: Iterable[Finding], fail_on: Risk) -> list[Finding]:
    return [finding for finding in findings if finding.risk >= fail_on]


# --- helpers ------------------------------------------------------------------------------------


def _get(body: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = body
    for segment in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(segment)
    return node


def _show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _from(resource: Resource) -> str:
    return f" (from {resource.source})" if resource.source else ""


def _managed(snapshot: ChartSnapshot) -> dict[ResourceKey, Resource]:
    """The resources helm tracks in the release: everything rendered that is not a hook."""
    return {key: res for key, res in snapshot.by_key().items() if not res.is_hook}


def _hooks(snapshot: ChartSnapshot) -> dict[ResourceKey, Resource]:
    return {key: res for key, res in snapshot.by_key().items() if res.is_hook}


def _selector(resource: Resource) -> str | None:
    selector = _get(resource.body, ("spec", "selector"))
    return json.dumps(selector, sort_keys=True) if selector else None


def _all_crds(snapshot: ChartSnapshot) -> dict[str, CrdDoc]:
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
    old_managed, new_managed = _managed(old), _managed(new)
    new_hooks = _hooks(new)
    old_crd_names = set(_all_crds(old))
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


# --- managed resources: added, removed, renamed, changed ----------------------------------------


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
        shown = _show(gating.lookup(values, ref.path)) if gating.is_set(values, ref.path) else "unset"
        parts.append(f"{ref.dotted} defaults to {shown}")
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
    where = _from(res)
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
        f"new resource{_from(res)} is not gated by any values flag{note}: it renders with the chart "
        "defaults, so every upgrade creates it and a rollback that does not prune leaves it behind",
        "Wrap its template in `{{- if .Values.<feature>.enabled }}` with the flag defaulting to false "
        "(design: additive changes gated behind flags), or document why it must always exist.",
    )


def _why_gone(res: Resource, old: ChartSnapshot, new: ChartSnapshot) -> str:
    """`its guard ... now defaults ...` when the resource vanished because a flag's default changed."""
    guards = _guards(res, old)
    changed = [
        f"{ref.dotted} {_show(gating.lookup(old.values, ref.path))} -> {_show(gating.lookup(new.values, ref.path))}"
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
        f"removed from the chart{_from(res)}{why}: the upgrade deletes it; {consequence}",
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
        f"renamed from {gone.name} to {came.name}{_from(came)}: the upgrade deletes {gone.name} and creates "
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
        f"{field_name} changed ({_show(old, 40)} -> {_show(new, 40)}), but it is immutable for a "
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
        old_selector = _get(before.body, ("spec", "selector"))
        new_selector = _get(after.body, ("spec", "selector"))
        if old_selector != new_selector:
            findings.append(
                Finding(
                    "selector-changed",
                    Risk.HIGH,
                    after.display(),
                    f"spec.selector changed ({_show(old_selector, 50)} -> {_show(new_selector, 50)}): it "
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
        old_value, new_value = _get(before.body, path), _get(after.body, path)
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
    old_size, new_size = _get(before.body, path), _get(after.body, path)
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
    old_ip = _get(before.body, ("spec", "clusterIP")) or None
    new_ip = _get(after.body, ("spec", "clusterIP")) or None
    if old_ip != new_ip:
        findings.append(_immutable(after, "spec.clusterIP", old_ip, new_ip, " once allocated"))
    old_type = _get(before.body, ("spec", "type")) or "ClusterIP"
    new_type = _get(after.body, ("spec", "type")) or "ClusterIP"
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


# --- hooks --------------------------------------------------------------------------------------

HOOK_MITIGATION = (
    "Gate it behind a flag defaulting to false (design: templates avoid Helm hooks by default), and make "
    "what it does idempotent and backward compatible, so the old version still works after a rollback."
)


def hook_findings(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    """Hooks (Helm, or Argo CD) that the new version renders and the old one did not."""
    old_hooks, old_managed = _hooks(old), _managed(old)
    findings = []
    for key, res in sorted(_hooks(new).items()):
        if key in old_hooks:
            continue
        hooks = ", ".join(res.helm_hooks)
        what = f"Helm hook ({hooks})" if hooks else f"Argo CD hook ({res.argocd_hook})"
        was = "turned into a " if key in old_managed else "new "
        detail = "hooks are not part of the release, so a rollback neither deletes it nor undoes what it did"
        risk = Risk.MEDIUM
        if not new.renders_by_default(key):
            risk = Risk.LOW
            detail += "; it is off with the chart defaults (switched on by the given values files)"
        elif set(res.helm_hooks) & UPGRADE_HOOKS:
            risk = Risk.HIGH
            detail += "; it runs on every upgrade, so a one-way change it makes (a migration) survives a rollback"
        findings.append(
            Finding(
                "hook-added",
                risk,
                res.display(),
                f"{was}{what}{_from(res)}: {detail}",
                HOOK_MITIGATION,
                old=None,
                new=list(res.helm_hooks) or res.argocd_hook,
            )
        )
    return findings


# --- CRDs ---------------------------------------------------------------------------------------

CRD_VERSION_MITIGATION = (
    "Keep old versions served (mark them `deprecated: true`) for at least one release and migrate stored "
    "objects before removing them (design: versioned CRDs + a conversion strategy)."
)
CRD_FIELD_MITIGATION = (
    "Make schema changes additive: add an optional field or a new CRD version with a conversion strategy, "
    "keep the old field (deprecated in its description) until no stored object uses it."
)


def _crd_label(name: str) -> str:
    return f"{CRD_KIND} {name}"


def crd_findings(old: ChartSnapshot, new: ChartSnapshot) -> list[Finding]:
    """CRDs removed, added, moved between crds/ and templates/, and their versions and schemas."""
    old_crds, new_crds = _all_crds(old), _all_crds(new)
    findings: list[Finding] = []
    for name in sorted(old_crds):
        before = old_crds[name]
        after = new_crds.get(name)
        if after is None:
            findings.append(crd_removed_finding(before))
            continue
        moved = crd_moved_finding(before, after)
        if moved is not None:
            findings.append(moved)
        findings += crd_schema_findings(name, before.body, after.body)
    for name in sorted(set(new_crds) - set(old_crds)):
        if new_crds[name].location == "crds":  # templates/: an added resource, see new_resource_finding
            findings.append(
                Finding(
                    "crd-added",
                    Risk.INFO,
                    _crd_label(name),
                    f"new CRD in crds/ ({new_crds[name].path}): helm installs crds/ on first install only, "
                    "and a rollback leaves it (and its objects) in place",
                    "Nothing to undo on rollback; apply it on upgrades yourself (or via GitOps with CRDs "
                    "included) and document that it stays behind.",
                )
            )
    return findings


def crd_removed_finding(before: CrdDoc) -> Finding:
    if before.location == "templates":
        how = "it was in templates/, so the upgrade deletes it, and with it every object of its kinds"
    else:
        how = (
            "helm leaves crds/ CRDs installed, but GitOps syncs that include CRDs prune it, and deleting a "
            "CRD deletes every object of its kinds"
        )
    return Finding(
        "crd-removed",
        Risk.VERY_HIGH,
        _crd_label(before.name),
        f"CRD removed from the chart: {how}; a rollback re-creates an empty CRD",
        "Never delete CRDs with a chart change (design: never delete CRDs automatically): keep it, "
        "annotated `helm.sh/resource-policy: keep`, deprecate its versions, and remove it by hand after "
        "migrating its objects.",
        old=before.location,
        new=None,
    )


def crd_moved_finding(before: CrdDoc, after: CrdDoc) -> Finding | None:
    if before.location == after.location:
        return None
    if after.location == "templates":
        kept = after.kept
        return Finding(
            "crd-moved-to-templates",
            Risk.MEDIUM if kept else Risk.VERY_HIGH,
            _crd_label(after.name),
            "CRD moved from crds/ into templates/: it now belongs to the release, so uninstalling it, or "
            "rolling back to a version without it in templates/, deletes the CRD and every object of it"
            + (" (it is annotated `helm.sh/resource-policy: keep`, so helm keeps it)" if kept else ""),
            "Keep CRDs in crds/ (or a separate CRD chart); if it must be templated, annotate it "
            "`helm.sh/resource-policy: keep`.",
            old="crds",
            new="templates",
        )
    kept = before.kept
    return Finding(
        "crd-moved-to-crds",
        Risk.MEDIUM if kept else Risk.VERY_HIGH,
        _crd_label(after.name),
        "CRD moved from templates/ into crds/: it leaves the release, so the upgrade deletes it and every "
        "object of it (helm applies crds/ on install only)"
        + (" (the old version was annotated `helm.sh/resource-policy: keep`, so helm keeps it)" if kept else ""),
        "Before moving it, release a version that annotates the templated CRD `helm.sh/resource-policy: "
        "keep`; then move it.",
        old="templates",
        new="crds",
    )


@dataclass(frozen=True)
class _CrdVersion:
    served: bool
    storage: bool
    schema: Mapping[str, Any] | None


def crd_versions(body: Mapping[str, Any]) -> dict[str, _CrdVersion]:
    """The versions of a CRD (apiextensions v1, or v1beta1 with `version` and `validation`)."""
    spec = body.get("spec") or {}
    shared = _get(spec, ("validation", "openAPIV3Schema"))
    versions: dict[str, _CrdVersion] = {}
    entries = spec.get("versions") or []
    if not entries and spec.get("version"):
        entries = [{"name": spec["version"], "served": True, "storage": True}]
    for entry in entries:
        if not isinstance(entry, Mapping) or "name" not in entry:
            continue
        schema = _get(entry, ("schema", "openAPIV3Schema")) or shared
        versions[str(entry["name"])] = _CrdVersion(
            served=bool(entry.get("served", True)),
            storage=bool(entry.get("storage", False)),
            schema=schema if isinstance(schema, Mapping) else None,
        )
    return versions


def crd_schema_findings(name: str, old_body: Mapping[str, Any], new_body: Mapping[str, Any]) -> list[Finding]:
    """Versions removed or unserved, the storage version moved, schema fields removed/retyped/required."""
    label = _crd_label(name)
    findings: list[Finding] = []
    old_scope, new_scope = _get(old_body, ("spec", "scope")), _get(new_body, ("spec", "scope"))
    if old_scope != new_scope:
        findings.append(
            Finding(
                "immutable-field-changed",
                Risk.VERY_HIGH,
                label,
                f"spec.scope changed ({old_scope} -> {new_scope}): the scope of a CRD is immutable, the "
                "upgrade's apply fails",
                "A different scope is a different API: create a new CRD (new group or name) and migrate.",
                old=old_scope,
                new=new_scope,
            )
        )
    old_versions, new_versions = crd_versions(old_body), crd_versions(new_body)
    for version, before in old_versions.items():
        after = new_versions.get(version)
        if after is None:
            findings.append(
                Finding(
                    "crd-version-removed",
                    Risk.VERY_HIGH,
                    label,
                    f"version {version} removed: clients and manifests using it break, and the CRD update "
                    f"is rejected while objects are still stored as {version} (status.storedVersions)",
                    CRD_VERSION_MITIGATION,
                    old=version,
                    new=None,
                )
            )
            continue
        if before.served and not after.served:
            findings.append(
                Finding(
                    "crd-version-unserved",
                    Risk.VERY_HIGH,
                    label,
                    f"version {version} no longer served: clients and manifests using it break",
                    CRD_VERSION_MITIGATION,
                    old={"served": True},
                    new={"served": False},
                )
            )
        if before.schema is not None and after.schema is not None:
            findings += _schema_walk(label, version, before.schema, after.schema, "")
    old_storage = next((v for v, d in old_versions.items() if d.storage), None)
    new_storage = next((v for v, d in new_versions.items() if d.storage), None)
    if old_storage and new_storage and old_storage != new_storage:
        brand_new = new_storage not in old_versions
        findings.append(
            Finding(
                "crd-storage-version-changed",
                Risk.VERY_HIGH if brand_new else Risk.MEDIUM,
                label,
                f"storage version moved {old_storage} -> {new_storage}: objects written after the upgrade "
                f"are stored as {new_storage}"
                + (
                    ", a version the old CRD does not have, so the rollback's CRD update is rejected "
                    "(status.storedVersions) and those objects become unreadable"
                    if brand_new
                    else f"; the old CRD still knows {new_storage}, so a rollback relies on conversion"
                ),
                "Add the new version as served but not stored first (one release), then move storage; "
                "roll back only to releases that still contain the storage version.",
                old=old_storage,
                new=new_storage,
            )
        )
    return findings


def _schema_walk(label: str, version: str, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Finding]:
    findings: list[Finding] = []
    old_type, new_type = old.get("type"), new.get("type")
    if old_type and new_type and old_type != new_type:
        return [
            Finding(
                "crd-field-type-changed",
                Risk.VERY_HIGH,
                label,
                f"{version}: field {path or '(root)'} changed type {old_type} -> {new_type}: stored objects "
                "no longer validate, and a rollback brings the old type back over objects written with the "
                "new one",
                CRD_FIELD_MITIGATION,
                old=old_type,
                new=new_type,
            )
        ]
    old_props = old.get("properties") or {}
    new_props = new.get("properties") or {}

    def child(name: str) -> str:
        return f"{path}.{name}" if path else name

    for prop in old_props:
        if prop not in new_props:
            findings.append(
                Finding(
                    "crd-field-removed",
                    Risk.VERY_HIGH,
                    label,
                    f"{version}: field {child(prop)} removed: objects that set it lose it (pruning) or fail "
                    "validation, and clients writing it break",
                    CRD_FIELD_MITIGATION,
                    old=child(prop),
                    new=None,
                )
            )
        elif isinstance(old_props[prop], Mapping) and isinstance(new_props[prop], Mapping):
            findings += _schema_walk(label, version, old_props[prop], new_props[prop], child(prop))
    if not old.get("x-kubernetes-preserve-unknown-fields"):
        for prop in new_props:
            if prop not in old_props:
                findings.append(
                    Finding(
                        "crd-field-added",
                        Risk.LOW,
                        label,
                        f"{version}: new field {child(prop)}: after a rollback the old schema does not know "
                        "it, so the API server prunes it and values set after the upgrade are dropped",
                        "Fine when the field is optional and its absence keeps the old behaviour; document "
                        "that a rollback drops it.",
                        old=None,
                        new=child(prop),
                    )
                )
    old_required = set(old.get("required") or [])
    for prop in new.get("required") or []:
        if prop not in old_required:
            findings.append(
                Finding(
                    "crd-field-required",
                    Risk.VERY_HIGH,
                    label,
                    f"{version}: field {child(prop)} is now required: existing objects without it can no "
                    "longer be updated, and manifests written for the old version are rejected",
                    "Give new fields a default (`default:` in the schema) instead of making them required; "
                    "require them only in a new CRD version.",
                    old=sorted(old_required),
                    new=child(prop),
                )
            )
    for key, suffix in (("items", "[]"), ("additionalProperties", ".*")):
        old_sub, new_sub = old.get(key), new.get(key)
        if isinstance(old_sub, Mapping) and isinstance(new_sub, Mapping):
            findings += _schema_walk(label, version, old_sub, new_sub, f"{path or ''}{suffix}")
    return findings


# --- default values -----------------------------------------------------------------------------


def flatten(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """`{a: {b: 1}, c: []}` -> `{("a", "b"): 1, ("c",): []}`; lists and empty maps are leaves."""
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in values.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


DEFAULTS_MITIGATION = (
    "Document the default change (chart changelog / upgrade notes) and set the value explicitly in the "
    "GitOps values, so a rollback of the chart does not silently bring the old default back."
)


def default_value_findings(
    old_values: Mapping[str, Any], new_values: Mapping[str, Any], user_values: Mapping[str, Any]
) -> list[Finding]:
    """Every default in values.yaml that changed, appeared or disappeared: information."""
    old_flat, new_flat = flatten(old_values), flatten(new_values)

    def has_children(flat: Mapping[tuple[str, ...], Any], path: tuple[str, ...]) -> bool:
        return any(other[: len(path)] == path and len(other) > len(path) for other in flat)

    findings: list[Finding] = []
    for path in sorted(set(old_flat) | set(new_flat)):
        key = ".".join(path)
        pinned = gating.is_set(user_values, path)
        if path in old_flat and path in new_flat:
            before, after = old_flat[path], new_flat[path]
            if before == after:
                continue
            findings.append(
                Finding(
                    "default-value-changed",
                    Risk.INFO,
                    f"values {key}",
                    f"default changed {_show(before, 50)} -> {_show(after, 50)}: a rollback silently brings "
                    f"back {_show(before, 50)}"
                    + (" (the given values files set it: this install is not affected)" if pinned else ""),
                    DEFAULTS_MITIGATION,
                    old=before,
                    new=after,
                )
            )
        elif path in new_flat:
            if new_flat[path] == {} and has_children(old_flat, path):
                continue
            findings.append(
                Finding(
                    "default-value-added",
                    Risk.INFO,
                    f"values {key}",
                    f"new value, default {_show(new_flat[path], 50)}: after a rollback the chart ignores it"
                    + (" (the given values files set it: that setting stops working)" if pinned else ""),
                    DEFAULTS_MITIGATION,
                    old=None,
                    new=new_flat[path],
                )
            )
        else:
            if old_flat[path] == {} and has_children(new_flat, path):
                continue
            findings.append(
                Finding(
                    "default-value-removed",
                    Risk.INFO,
                    f"values {key}",
                    f"value removed (default was {_show(old_flat[path], 50)}): a rollback brings it "
                    "back with its old default" + (" (the given values files still set it)" if pinned else ""),
                    DEFAULTS_MITIGATION,
                    old=old_flat[path],
                    new=None,
                )
            )
    return findings
