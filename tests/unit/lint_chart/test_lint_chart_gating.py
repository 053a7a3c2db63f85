"""The static reading of helm templates: which `{{ if .Values.x }}` encloses a manifest."""

from __future__ import annotations

from rollback_verifier.lint_chart import gating
from rollback_verifier.lint_chart.gating import Guard, ValuesRef

SINGLE = """\
{{- if .Values.metrics.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "x.fullname" . }}-metrics
spec:
  ports: [{port: 9090}]
{{- end }}
"""

MIXED = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ include "x.fullname" . }}
---
{{- if and .Values.metrics.enabled (not .Values.legacy) }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "x.fullname" . }}-metrics
{{- end }}
"""


def test_guard_found_around_a_single_manifest() -> None:
    guards = gating.guards_for(SINGLE, "Service", "rel-x-metrics")
    assert guards == (Guard("if", ".Values.metrics.enabled"),)
    assert guards[0].refs == (ValuesRef(("metrics", "enabled"), negated=False),)


def test_no_guard_for_an_unconditional_manifest() -> None:
    assert gating.guards_for(MIXED, "Service", "rel-x") == ()


def test_names_pick_the_right_manifest_and_not_is_negation() -> None:
    guards = gating.guards_for(MIXED, "Service", "rel-x-metrics")
    assert guards is not None and len(guards) == 1
    assert guards[0].refs == (
        ValuesRef(("metrics", "enabled"), negated=False),
        ValuesRef(("legacy",), negated=True),
    )


def test_ambiguous_manifests_keep_only_common_guards() -> None:
    # two unnamed-alike Services, one guarded: we cannot tell which, so claim no guard
    source = MIXED.replace("-metrics", "")
    assert gating.guards_for(source, "Service", "rel-x") == ()


def test_else_branch_inverts_the_flag() -> None:
    source = """\
{{- if .Values.external.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: external
{{- else }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: internal
{{- end }}
"""
    guards = gating.guards_for(source, "Deployment", "internal")
    assert guards == (Guard("if", ".Values.external.enabled", in_else=True),)
    assert guards[0].refs == (ValuesRef(("external", "enabled"), negated=True),)
    assert gating.guards_for(source, "ConfigMap", "external") == (Guard("if", ".Values.external.enabled"),)


def test_nested_guards_outermost_first_and_non_values_conditions_dropped() -> None:
    source = """\
{{- with .Values.ingress }}
{{- if $.Capabilities.APIVersions.Has "networking.k8s.io/v1" }}
{{- if $.Values.ingress.tls.enabled }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
{{- end }}
{{- end }}
{{- end }}
"""
    guards = gating.guards_for(source, "Ingress", "web")
    assert guards == (Guard("with", ".Values.ingress"), Guard("if", "$.Values.ingress.tls.enabled"))


def test_a_kind_only_inside_a_define_or_missing_is_unknown() -> None:
    source = '{{- define "x.cm" }}\nkind: ConfigMap\n{{- end }}\n{{ include "x.cm" . }}\n'
    assert gating.guards_for(source, "ConfigMap", "cm") is None
    assert gating.guards_for(SINGLE, "Deployment", "x") is None


def test_braces_in_strings_and_comments_do_not_confuse_the_scanner() -> None:
    source = """\
{{- /* a comment with }} and {{ if .Values.fake }} inside */ -}}
{{- if .Values.real.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s}}" "cm" }}
{{- end }}
"""
    assert gating.guards_for(source, "ConfigMap", "cm}}") == (Guard("if", ".Values.real.enabled"),)


def test_else_if_names_its_own_condition() -> None:
    source = """\
{{- if .Values.a }}
kind: ConfigMap
metadata:
  name: a
{{- else if .Values.b.enabled }}
kind: Secret
metadata:
  name: b
{{- end }}
"""
    assert gating.guards_for(source, "Secret", "b") == (Guard("if", ".Values.b.enabled"),)


def test_boolean_refs_and_disabling_settings() -> None:
    guards = (Guard("if", "and .Values.m.enabled (not .Values.off) .Values.hosts"),)
    values = {"m": {"enabled": True}, "off": False, "hosts": ["a"]}
    refs = gating.boolean_refs(guards, values)
    assert refs == (ValuesRef(("m", "enabled"), False), ValuesRef(("off",), True))
    settings = gating.disabling_settings(refs)
    assert settings == ((("m", "enabled"), False), (("off",), True))
    assert gating.settings_to_values(settings) == {"m": {"enabled": False}, "off": True}


def test_lookup_and_is_set() -> None:
    values = {"a": {"b": None, "c": False}}
    assert gating.lookup(values, ("a", "c")) is False
    assert gating.lookup(values, ("a", "x", "y")) is None
    assert gating.is_set(values, ("a", "b"))
    assert not gating.is_set(values, ("a", "x"))


def test_trim_markers_on_both_sides() -> None:
    source = "{{- if .Values.networkPolicy.enabled -}}\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
    source += 'metadata:\n  name: {{ include "x.fullname" . }}\n{{- end }}\n'
    assert gating.guards_for(source, "NetworkPolicy", "rel-x") == (Guard("if", ".Values.networkPolicy.enabled"),)
