"""Generates the RollbackVerification CRD from the pydantic models in api.py.

Pydantic emits JSON Schema (with $refs, anyOf-null for optionals, titles); Kubernetes wants a
structural OpenAPI v3 schema (everything inline, one type per node). This module converts one
into the other, the way controller-gen turns Go types into CRDs.
"""

from __future__ import annotations

from typing import Any

import yaml

from rollback_verifier import GROUP, KIND, PLURAL, VERSION
from rollback_verifier.api.models import RollbackVerificationSpec, RollbackVerificationStatus

CRD_FILE_NAME = f"{PLURAL}.{GROUP}.yaml"
# JSON Schema keywords that structural schemas keep as they are.
_KEPT = (
    "description",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "enum",
    "format",
    "x-kubernetes-validations",
)
_RENAMED = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **extra}
    return node


def _structural(node: dict[str, Any], defs: dict[str, Any], *, with_defaults: bool) -> dict[str, Any]:
    node = _resolve(node, defs)
    if "anyOf" in node:  # Optional[X] -> X: absence, not null, means "unset" in Kubernetes.
        variants = [_resolve(v, defs) for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union of {len(variants)} types in a structural schema")
        merged = {**variants[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        return _structural(merged, defs, with_defaults=with_defaults)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**_resolve(node["allOf"][0], defs), **{k: v for k, v in node.items() if k != "allOf"}}
        return _structural(merged, defs, with_defaults=with_defaults)

    out: dict[str, Any] = {}
    kind = node.get("type")
    if kind is None and "enum" in node:
        kind = "string"
    if kind is None:
        raise ValueError(f"schema node without a type: {node}")
    out["type"] = kind
    for key in _KEPT:
        if key in node:
            out[key] = node[key]
    for key, renamed in _RENAMED.items():
        if key in node:
            out[renamed] = node[key]
    if with_defaults and "default" in node and node["default"] is not None:
        out["default"] = node["default"]

    if kind == "object":
        props = node.get("properties", {})
        if props:
            out["properties"] = {
                name: _structural(sub, defs, with_defaults=with_defaults) for name, sub in props.items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
        additional = node.get("additionalProperties")
        if isinstance(additional, dict):
            out["additionalProperties"] = _structural(additional, defs, with_defaults=with_defaults)
    elif kind == "array":
        out["items"] = _structural(node["items"], defs, with_defaults=with_defaults)
    return out


def _schema_of(model: type[Any], *, with_defaults: bool) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    return _structural(raw, raw.get("$defs", {}), with_defaults=with_defaults)


def _status_schema() -> dict[str, Any]:
    status = _schema_of(RollbackVerificationStatus, with_defaults=False)
    conditions = status["properties"]["conditions"]
    # Conditions are a map keyed by type, as metav1.Condition lists are.
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["required"] = ["type", "status", "reason"]
    return status


PRINTER_COLUMNS = [
    {"name": "Application", "type": "string", "jsonPath": ".spec.application.name"},
    {"name": "Revision", "type": "string", "jsonPath": ".status.shortRevision"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    {"name": "Duration", "type": "number", "jsonPath": ".status.durationSeconds"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition, as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "rollback-verifier",
                "app.kubernetes.io/part-of": "rollback-verifier",
            },
            # Helm must never delete this CRD (and every RollbackVerification with it) on rollback.
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["rbv"],
                "categories": ["gitops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "One verification that a rollback really happened; an audit record.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _schema_of(RollbackVerificationSpec, with_defaults=True),
                                "status": _status_schema(),
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated from operator/rollback_verifier/api/models.py by `rollback-verifier crds`. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
