"""The pure rollback-safety rules, on small in-memory manifests: one test per rule, and its
"no finding" counterpart."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rollback_verifier.lint_chart import rules
from rollback_verifier.lint_chart.model import (
    ChartSnapshot,
    CrdDoc,
    Finding,
    Resource,
    ResourceKey,
    Risk,
    resource_from_manifest,
)

SRC = "app/templates/"


def res(
    kind: str,
    name: str,
    *,
    api: str = "v1",
    source: str | None = None,
    annotations: dict[str, str] | None = None,
    **fields: Any,
) -> Resource:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    doc = {"apiVersion": api, "kind": kind, "metadata": metadata, **fields}
    made = resource_from_manifest(doc, source=source, release_namespace="default")
    assert made is not None
    return made


def deploy(name: str = "web", *, app: str = "web", source: str | None = SRC + "deploy.yaml", **spec: Any) -> Resource:
    body_spec = {
        "selector": {"matchLabels": {"app": app}},
        "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c"}]}},
        **spec,
    }
    return res("Deployment", name, api="apps/v1", source=source, spec=body_spec)


def snap(*resources: Resource, **kwargs: Any) -> ChartSnapshot:
    return ChartSnapshot(resources=tuple(resources), **kwargs)


def only(findings: list[Finding], rule: str) -> Finding:
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


def rule_names(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


# --- no change ----------------------------------------------------------------------------------


def test_identical_versions_have_no_findings() -> None:
    chart = snap(deploy(), res("Service", "web", spec={"selector": {"app": "web"}}), values={"a": 1})
    assert rules.lint(chart, chart) == []


# --- new resources ------------------------------------------------------------------------------


def test_new_resource_without_a_guard_is_ungated() -> None:
    cm = res("ConfigMap", "extra", source=SRC + "extra.yaml", data={"a": "b"})
    new = snap(deploy(), cm, templates={SRC + "extra.yaml": "apiVersion: v1\nkind: ConfigMap\n"})
    finding = only(rules.lint(snap(deploy()), new), "new-resource-ungated")
    assert finding.risk is Risk.MEDIUM
    assert finding.resource == "ConfigMap default/extra"
    assert "app/templates/extra.yaml" in finding.message


def test_existing_resource_is_not_new() -> None:
    findings = rules.resource_findings(snap(deploy()), snap(deploy()))
    assert findings == []


GUARDED = """\
{{- if .Values.metrics.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: metrics
{{- end }}
"""


def _metrics_chart(default: bool, **kwargs: Any) -> ChartSnapshot:
    svc = res("Service", "metrics", source=SRC + "metrics.yaml", spec={"selector": {"app": "web"}})
    return snap(
        deploy(),
        svc,
        templates={SRC + "metrics.yaml": GUARDED},
        values={"metrics": {"enabled": default}},
        **kwargs,
    )


def test_new_resource_whose_flag_defaults_to_true() -> None:
    finding = only(rules.lint(snap(deploy()), _metrics_chart(True)), "new-resource-default-on")
    assert finding.risk is Risk.MEDIUM
    assert "metrics.enabled defaults to true" in finding.message
    assert "{{ if .Values.metrics.enabled }}" in finding.message
    assert "`metrics.enabled: false`" in finding.mitigation
    assert finding.new == ["metrics.enabled"]


def test_new_resource_in_an_else_branch_is_default_on_but_not_an_opt_in_flag() -> None:
    template = """\
{{- if .Values.rbac.clusterScoped }}
kind: ClusterRole
metadata:
  name: reader
{{- else }}
kind: Role
metadata:
  name: reader
{{- end }}
"""
    role = res("Role", "reader", api="rbac.authorization.k8s.io/v1", source=SRC + "rbac.yaml")
    new = snap(role, templates={SRC + "rbac.yaml": template}, values={"rbac": {"clusterScoped": False}})
    finding = only(rules.lint(snap(), new), "new-resource-default-on")
    assert "the {{ else }} of {{ if .Values.rbac.clusterScoped }}" in finding.message
    assert "rbac.clusterScoped defaults to false" in finding.message
    assert "its own flag" in finding.mitigation
    assert rules.flag_checks_needed(snap(), new) == {((("rbac", "clusterScoped"), True),)}


def test_new_resource_off_by_default_is_low() -> None:
    # rendered only because the user's values switched it on: not in the defaults-only render
    new = _metrics_chart(False, default_keys=frozenset({deploy().key}))
    findings = rules.resource_findings(snap(deploy()), new)
    finding = only(findings, "new-resource-gated")
    assert finding.risk is Risk.LOW
    assert rule_names(findings) == ["new-resource-gated"]


def test_flag_render_that_keeps_the_resource_means_ungated() -> None:
    svc_key = ResourceKey("", "Service", "default", "metrics")
    settings = ((("metrics", "enabled"), False),)
    new = _metrics_chart(True, flag_renders={settings: frozenset({deploy().key, svc_key})})
    finding = only(rules.lint(snap(deploy()), new), "new-resource-ungated")
    assert "switching off metrics.enabled" in finding.message


def test_flag_render_that_removes_the_resource_confirms_the_gate() -> None:
    settings = ((("metrics", "enabled"), False),)
    new = _metrics_chart(True, flag_renders={settings: frozenset({deploy().key})})
    assert "new-resource-default-on" in rule_names(rules.lint(snap(deploy()), new))


def test_flag_checks_needed_names_the_flags_to_switch_off() -> None:
    assert rules.flag_checks_needed(snap(deploy()), _metrics_chart(True)) == {((("metrics", "enabled"), False),)}
    assert rules.flag_checks_needed(_metrics_chart(True), _metrics_chart(True)) == set()


# --- removed and renamed ------------------------------------------------------------------------


def test_removed_workload_is_high_and_other_kinds_medium() -> None:
    old = snap(deploy(), res("ConfigMap", "cfg"), res("PersistentVolumeClaim", "data"))
    findings = rules.lint(old, snap())
    by_resource = {f.resource: f for f in findings if f.rule == "resource-removed"}
    assert by_resource["Deployment default/web"].risk is Risk.HIGH
    assert by_resource["ConfigMap default/cfg"].risk is Risk.MEDIUM
    assert "data in the claim is gone" in by_resource["PersistentVolumeClaim default/data"].message
    assert rules.failing(findings, Risk.HIGH)


def test_removed_because_a_flag_default_changed_says_so() -> None:
    finding = only(
        rules.lint(_metrics_chart(True), snap(deploy(), values={"metrics": {"enabled": False}})), "resource-removed"
    )
    assert "its guard {{ if .Values.metrics.enabled }} changed default: metrics.enabled true -> false" in (
        finding.message
    )
    assert finding.risk is Risk.HIGH


def test_nothing_removed_nothing_reported() -> None:
    findings = rules.lint(snap(deploy()), snap(deploy(), res("ConfigMap", "cfg")))
    assert rule_names(findings) == ["new-resource-ungated"]


def test_rename_detected_by_selector() -> None:
    findings = rules.lint(snap(deploy("web")), snap(deploy("web-v2", source=SRC + "other.yaml")))
    finding = only(findings, "resource-renamed")
    assert finding.risk is Risk.HIGH
    assert (finding.old, finding.new) == ("web", "web-v2")
    assert "resource-removed" not in rule_names(findings)
    assert "new-resource-ungated" not in rule_names(findings)


def test_rename_detected_by_template_file() -> None:
    old = snap(res("Service", "web", source=SRC + "svc.yaml"))
    new = snap(res("Service", "frontend", source=SRC + "svc.yaml"))
    assert only(rules.lint(old, new), "resource-renamed").resource == "Service default/web -> frontend"


def test_unrelated_removal_and_addition_is_not_a_rename() -> None:
    old = snap(deploy("web", app="web"))
    new = snap(deploy("api", app="api", source=SRC + "api.yaml"))
    assert sorted(rule_names(rules.lint(old, new))) == ["new-resource-ungated", "resource-removed"]


# --- selectors and immutable fields -------------------------------------------------------------


def test_changed_selector_is_high() -> None:
    finding = only(rules.lint(snap(deploy(app="web")), snap(deploy(app="frontend"))), "selector-changed")
    assert finding.risk is Risk.HIGH
    assert finding.old == {"matchLabels": {"app": "web"}}
    assert finding.new == {"matchLabels": {"app": "frontend"}}


def test_mutable_changes_are_fine() -> None:
    assert rules.lint(snap(deploy()), snap(deploy(replicas=3))) == []


def _sts(**spec: Any) -> Resource:
    base = {"selector": {"matchLabels": {"app": "db"}}, "serviceName": "db", "volumeClaimTemplates": []}
    return res("StatefulSet", "db", api="apps/v1", spec={**base, **spec})


def test_statefulset_immutable_fields() -> None:
    findings = rules.lint(snap(_sts()), snap(_sts(serviceName="db-headless", podManagementPolicy="Parallel")))
    assert sorted(f.message.split(" ")[0] for f in findings) == ["spec.podManagementPolicy", "spec.serviceName"]
    assert {f.rule for f in findings} == {"immutable-field-changed"}
    assert rules.lint(snap(_sts()), snap(_sts(replicas=5))) == []


def _pvc(size: str = "1Gi", **spec: Any) -> Resource:
    base = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    return res("PersistentVolumeClaim", "data", spec={**base, **spec})


def test_pvc_storage_class_and_size() -> None:
    assert only(rules.lint(snap(_pvc()), snap(_pvc(storageClassName="fast"))), "immutable-field-changed")
    grow = only(rules.lint(snap(_pvc("1Gi")), snap(_pvc("5Gi"))), "immutable-field-changed")
    assert "never shrink" in grow.message
    shrink = only(rules.lint(snap(_pvc("5Gi")), snap(_pvc("1Gi"))), "immutable-field-changed")
    assert "when it shrinks" in shrink.message
    assert rules.lint(snap(_pvc("1Gi")), snap(_pvc("1024Mi"))) == []


def test_service_cluster_ip_and_external_name() -> None:
    plain = res("Service", "web", spec={"selector": {"app": "web"}})
    headless = res("Service", "web", spec={"selector": {"app": "web"}, "clusterIP": "None"})
    external = res("Service", "web", spec={"type": "ExternalName", "externalName": "example.com"})
    assert only(rules.lint(snap(plain), snap(headless)), "immutable-field-changed").old is None
    assert only(rules.lint(snap(plain), snap(external)), "immutable-field-changed").new == "ExternalName"
    empty_ip = res("Service", "web", spec={"selector": {"app": "web"}, "clusterIP": ""})
    assert rules.lint(snap(plain), snap(empty_ip)) == []


def test_immutable_configmap_content() -> None:
    before = res("ConfigMap", "cfg", immutable=True, data={"a": "1"})
    after = res("ConfigMap", "cfg", immutable=True, data={"a": "2"})
    assert "new content" in only(rules.lint(snap(before), snap(after)), "immutable-field-changed").message
    made_immutable = res("ConfigMap", "cfg", immutable=True, data={"a": "1"})
    mutable = res("ConfigMap", "cfg", data={"a": "1"})
    assert "now `immutable: true`" in rules.lint(snap(mutable), snap(made_immutable))[0].message
    assert rules.lint(snap(mutable), snap(res("ConfigMap", "cfg", data={"a": "2"}))) == []


def test_rolebinding_role_ref() -> None:
    def binding(role: str) -> Resource:
        return res(
            "RoleBinding",
            "rb",
            api="rbac.authorization.k8s.io/v1",
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        )

    assert only(rules.lint(snap(binding("a")), snap(binding("b"))), "immutable-field-changed")
    assert rules.lint(snap(binding("a")), snap(binding("a"))) == []


def test_api_version_change_is_low() -> None:
    before = res("PodDisruptionBudget", "web", api="policy/v1beta1", spec={"maxUnavailable": 1})
    after = res("PodDisruptionBudget", "web", api="policy/v1", spec={"maxUnavailable": 1})
    finding = only(rules.lint(snap(before), snap(after)), "api-version-changed")
    assert finding.risk is Risk.LOW
    assert (finding.old, finding.new) == ("policy/v1beta1", "policy/v1")


# --- hooks --------------------------------------------------------------------------------------


def _job(hook: str | None = None, argocd: str | None = None) -> Resource:
    annotations = {}
    if hook:
        annotations["helm.sh/hook"] = hook
    if argocd:
        annotations["argocd.argoproj.io/hook"] = argocd
    return res("Job", "migrate", api="batch/v1", annotations=annotations, spec={"template": {}})


def test_upgrade_hook_added_is_high() -> None:
    findings = rules.lint(snap(deploy()), snap(deploy(), _job("pre-install,pre-upgrade")))
    finding = only(findings, "hook-added")
    assert finding.risk is Risk.HIGH
    assert finding.new == ["pre-install", "pre-upgrade"]
    assert "new-resource-ungated" not in rule_names(findings)


def test_install_hook_and_argocd_hook_are_medium() -> None:
    assert only(rules.lint(snap(), snap(_job("post-install"))), "hook-added").risk is Risk.MEDIUM
    argocd = only(rules.lint(snap(), snap(_job(argocd="PostSync"))), "hook-added")
    assert argocd.risk is Risk.MEDIUM and "Argo CD hook (PostSync)" in argocd.message


def test_hook_off_by_default_is_low() -> None:
    new = snap(_job("pre-upgrade"), default_keys=frozenset())
    assert only(rules.lint(snap(), new), "hook-added").risk is Risk.LOW


def test_existing_hook_is_not_reported_and_a_managed_resource_turned_hook_is() -> None:
    assert rules.lint(snap(_job("pre-upgrade")), snap(_job("pre-upgrade"))) == []
    turned = only(rules.lint(snap(_job()), snap(_job("post-upgrade"))), "hook-added")
    assert turned.message.startswith("turned into a Helm hook")


# --- CRDs ---------------------------------------------------------------------------------------


def crd_body(
    *versions: dict[str, Any], scope: str = "Namespaced", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "widgets.example.com"}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {"group": "example.com", "scope": scope, "names": {"kind": "Widget"}, "versions": list(versions)},
    }


def version(name: str = "v1", *, served: bool = True, storage: bool = True, spec: Any = None) -> dict[str, Any]:
    spec_schema = spec or {
        "type": "object",
        "properties": {"size": {"type": "integer"}, "color": {"type": "string"}},
        "required": ["size"],
    }
    return {
        "name": name,
        "served": served,
        "storage": storage,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
    }


def in_crds(body: dict[str, Any]) -> ChartSnapshot:
    return snap(crds=(CrdDoc("widgets.example.com", "crds", body, "crds/widgets.yaml"),))


def in_templates(body: dict[str, Any]) -> ChartSnapshot:
    made = resource_from_manifest(body, source=SRC + "crd.yaml", release_namespace="default")
    assert made is not None
    return snap(made)


def test_unchanged_crd_has_no_findings() -> None:
    assert rules.lint(in_crds(crd_body(version())), in_crds(crd_body(version()))) == []


def test_crd_removed_is_very_high() -> None:
    finding = only(rules.lint(in_crds(crd_body(version())), snap()), "crd-removed")
    assert finding.risk is Risk.VERY_HIGH


def test_crd_added_in_crds_is_info_and_in_templates_is_a_new_resource() -> None:
    assert only(rules.lint(snap(), in_crds(crd_body(version()))), "crd-added").risk is Risk.INFO
    assert rule_names(rules.lint(snap(), in_templates(crd_body(version())))) == ["new-resource-ungated"]


def test_crd_moved_to_templates() -> None:
    findings = rules.lint(in_crds(crd_body(version())), in_templates(crd_body(version())))
    assert rule_names(findings) == ["crd-moved-to-templates"]
    assert findings[0].risk is Risk.VERY_HIGH
    kept = crd_body(version(), annotations={"helm.sh/resource-policy": "keep"})
    assert only(rules.lint(in_crds(crd_body(version())), in_templates(kept)), "crd-moved-to-templates").risk is (
        Risk.MEDIUM
    )


def test_crd_moved_to_crds() -> None:
    finding = only(rules.lint(in_templates(crd_body(version())), in_crds(crd_body(version()))), "crd-moved-to-crds")
    assert finding.risk is Risk.VERY_HIGH


def test_crd_version_removed_and_unserved() -> None:
    old = in_crds(crd_body(version("v1alpha1", storage=False), version("v1")))
    removed = rules.lint(old, in_crds(crd_body(version("v1"))))
    assert only(removed, "crd-version-removed").old == "v1alpha1"
    unserved = rules.lint(old, in_crds(crd_body(version("v1alpha1", served=False, storage=False), version("v1"))))
    assert only(unserved, "crd-version-unserved").risk is Risk.VERY_HIGH


def test_crd_version_added_alone_is_fine() -> None:
    old = in_crds(crd_body(version("v1")))
    new = in_crds(crd_body(version("v1"), version("v2", storage=False)))
    assert rules.lint(old, new) == []


def test_crd_storage_version_moved() -> None:
    old = in_crds(crd_body(version("v1")))
    to_new = in_crds(crd_body(version("v1", storage=False), version("v2")))
    assert only(rules.lint(old, to_new), "crd-storage-version-changed").risk is Risk.VERY_HIGH
    both = in_crds(crd_body(version("v1"), version("v2", storage=False)))
    moved = in_crds(crd_body(version("v1", storage=False), version("v2")))
    assert only(rules.lint(both, moved), "crd-storage-version-changed").risk is Risk.MEDIUM


def _with_spec(**changes: Any) -> ChartSnapshot:
    spec: dict[str, Any] = {
        "type": "object",
        "properties": {"size": {"type": "integer"}, "color": {"type": "string"}},
        "required": ["size"],
    }
    spec = copy.deepcopy(spec)
    spec.update(changes)
    return in_crds(crd_body(version(spec=spec)))


def test_crd_field_removed() -> None:
    finding = only(rules.lint(_with_spec(), _with_spec(properties={"size": {"type": "integer"}})), "crd-field-removed")
    assert finding.old == "spec.color"
    assert finding.risk is Risk.VERY_HIGH


def test_crd_field_type_changed() -> None:
    new = _with_spec(properties={"size": {"type": "string"}, "color": {"type": "string"}})
    finding = only(rules.lint(_with_spec(), new), "crd-field-type-changed")
    assert (finding.old, finding.new) == ("integer", "string")
    assert "spec.size" in finding.message


def test_crd_field_newly_required() -> None:
    finding = only(rules.lint(_with_spec(), _with_spec(required=["size", "color"])), "crd-field-required")
    assert finding.new == "spec.color"


def test_required_field_inside_a_new_object_is_not_breaking() -> None:
    props = {
        "size": {"type": "integer"},
        "color": {"type": "string"},
        "extra": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
    }
    findings = rules.lint(_with_spec(), _with_spec(properties=props))
    assert rule_names(findings) == ["crd-field-added"]
    assert findings[0].risk is Risk.LOW


def test_added_field_under_preserve_unknown_fields_is_not_reported() -> None:
    old = _with_spec(**{"x-kubernetes-preserve-unknown-fields": True})
    props = {"size": {"type": "integer"}, "color": {"type": "string"}, "more": {"type": "string"}}
    new = _with_spec(properties=props, **{"x-kubernetes-preserve-unknown-fields": True})
    assert rules.lint(old, new) == []


def test_nested_array_items_are_walked() -> None:
    items = {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}
    props_old = {"size": {"type": "integer"}, "color": {"type": "string"}, "list": items}
    props_new = copy.deepcopy(props_old)
    props_new["list"]["items"]["properties"]["n"]["type"] = "integer"
    finding = only(
        rules.lint(_with_spec(properties=props_old), _with_spec(properties=props_new)), "crd-field-type-changed"
    )
    assert "spec.list[].n" in finding.message


def test_crd_scope_change_is_immutable() -> None:
    old = in_crds(crd_body(version()))
    new = in_crds(crd_body(version(), scope="Cluster"))
    assert only(rules.lint(old, new), "immutable-field-changed").risk is Risk.VERY_HIGH


def test_v1beta1_crd_versions_are_understood() -> None:
    body = {
        "apiVersion": "apiextensions.k8s.io/v1beta1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"version": "v1", "validation": {"openAPIV3Schema": {"type": "object"}}},
    }
    assert set(rules.crd_versions(body)) == {"v1"}
    assert rules.crd_versions(body)["v1"].schema == {"type": "object"}


# --- default values -----------------------------------------------------------------------------


def test_changed_default_is_info_with_old_and_new() -> None:
    findings = rules.default_value_findings({"replicas": 1, "a": {"b": "x"}}, {"replicas": 2, "a": {"b": "x"}}, {})
    finding = only(findings, "default-value-changed")
    assert (finding.risk, finding.resource, finding.old, finding.new) == (Risk.INFO, "values replicas", 1, 2)
    assert not rules.failing(findings, Risk.LOW)


def test_added_and_removed_defaults() -> None:
    findings = rules.default_value_findings({"old": True, "m": {}}, {"new": 1, "m": {"x": 1}}, {})
    assert sorted((f.rule, f.resource) for f in findings) == [
        ("default-value-added", "values m.x"),
        ("default-value-added", "values new"),
        ("default-value-removed", "values old"),
    ]


def test_default_overridden_by_the_values_files_is_noted() -> None:
    finding = rules.default_value_findings({"image": {"tag": "1"}}, {"image": {"tag": "2"}}, {"image": {"tag": "9"}})[0]
    assert "the given values files set it" in finding.message


def test_unchanged_defaults_are_quiet() -> None:
    assert rules.default_value_findings({"a": [1, 2], "b": {"c": None}}, {"a": [1, 2], "b": {"c": None}}, {}) == []


# --- the whole ----------------------------------------------------------------------------------


def test_findings_sorted_most_risky_first_and_failing_threshold() -> None:
    old = snap(deploy(app="web"), values={"replicas": 1})
    new = snap(deploy(app="new"), res("ConfigMap", "cfg"), values={"replicas": 2})
    findings = rules.lint(old, new)
    assert [f.risk for f in findings] == sorted((f.risk for f in findings), reverse=True)
    assert rule_names(findings) == ["selector-changed", "new-resource-ungated", "default-value-changed"]
    assert len(rules.failing(findings, Risk.HIGH)) == 1
    assert len(rules.failing(findings, Risk.INFO)) == 3
    assert rules.failing(findings, Risk.VERY_HIGH) == []


@pytest.mark.parametrize("label", ["info", "low", "medium", "high", "very-high"])
def test_risk_labels_round_trip(label: str) -> None:
    assert Risk.parse(label).label == label


def test_unknown_risk_label() -> None:
    with pytest.raises(ValueError, match="unknown risk"):
        Risk.parse("critical")


def test_cluster_scoped_resources_have_no_namespace() -> None:
    role = res("ClusterRole", "reader", api="rbac.authorization.k8s.io/v1")
    assert role.key == ResourceKey("rbac.authorization.k8s.io", "ClusterRole", "", "reader")
    assert role.display() == "ClusterRole reader"
    assert resource_from_manifest({"kind": "ConfigMap"}, source=None, release_namespace="x") is None
