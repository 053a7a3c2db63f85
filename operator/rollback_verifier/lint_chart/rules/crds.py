"""CRDs: Helm never upgrades or deletes them, so a rollback keeps the newer CRD; versions and schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollback_verifier.lint_chart.model import (
    CRD_KIND,
    ChartSnapshot,
    CrdDoc,
    Finding,
    Risk,
)
from rollback_verifier.lint_chart.rules.common import all_crds, value_at

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
    old_crds, new_crds = all_crds(old), all_crds(new)
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
    shared = value_at(spec, ("validation", "openAPIV3Schema"))
    versions: dict[str, _CrdVersion] = {}
    entries = spec.get("versions") or []
    if not entries and spec.get("version"):
        entries = [{"name": spec["version"], "served": True, "storage": True}]
    for entry in entries:
        if not isinstance(entry, Mapping) or "name" not in entry:
            continue
        schema = value_at(entry, ("schema", "openAPIV3Schema")) or shared
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
    old_scope, new_scope = value_at(old_body, ("spec", "scope")), value_at(new_body, ("spec", "scope"))
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
