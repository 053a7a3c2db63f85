"""The data the lint-chart core works on: risks, findings, rendered resources, chart snapshots.

Everything here is plain data; nothing runs helm or git.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CRD_KIND = "CustomResourceDefinition"
HELM_HOOK = "helm.sh/hook"
ARGOCD_HOOK = "argocd.argoproj.io/hook"
RESOURCE_POLICY = "helm.sh/resource-policy"

# Kinds that have no namespace; every other kind (including unknown custom kinds) gets the
# release namespace when its manifest does not name one, the way `helm install -n NS` applies it.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)


class InputError(Exception):
    """A chart, values file or git ref that cannot be used: reported as one line, exit code 2."""


class Risk(enum.IntEnum):
    """How likely a change is to break a rollback; ordered, so `risk >= Risk.HIGH` works."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Risk:
        for risk in cls:
            if risk.label == text:
                return risk
        raise ValueError(f"unknown risk {text!r}; expected one of {', '.join(RISK_LABELS)}")


RISK_LABELS = tuple(risk.label for risk in Risk)


@dataclass(frozen=True)
class Finding:
    """One change between the two chart versions, with what it means for a rollback."""

    rule: str
    risk: Risk
    resource: str
    message: str
    mitigation: str
    old: Any = None
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "risk": self.risk.label,
            "resource": self.resource,
            "message": self.message,
            "mitigation": self.mitigation,
            "old": _jsonable(self.old),
            "new": _jsonable(self.new),
        }


def _jsonable(value: Any) -> Any:
    # Values come from YAML: dates and other odd scalars become strings, everything else stays.
    return json.loads(json.dumps(value, default=str))


def api_group(api_version: str) -> str:
    """`apps/v1` -> `apps`; `v1` -> `` (the core group)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass(frozen=True, order=True)
class ResourceKey:
    """A resource's identity across versions: the API version may change, the group may not."""

    group: str
    kind: str
    namespace: str
    name: str

    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Resource:
    """One rendered manifest and the template file that produced it (helm's `# Source:`)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any]
    source: str | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(api_group(self.api_version), self.kind, self.namespace, self.name)

    @property
    def annotations(self) -> Mapping[str, Any]:
        metadata = self.body.get("metadata") or {}
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        return annotations if isinstance(annotations, Mapping) else {}

    @property
    def helm_hooks(self) -> tuple[str, ...]:
        raw = self.annotations.get(HELM_HOOK)
        if not raw:
            return ()
        return tuple(part.strip() for part in str(raw).split(",") if part.strip())

    @property
    def argocd_hook(self) -> str | None:
        raw = self.annotations.get(ARGOCD_HOOK)
        return str(raw) if raw else None

    @property
    def is_hook(self) -> bool:
        return bool(self.helm_hooks) or self.argocd_hook is not None

    @property
    def kept(self) -> bool:
        """`helm.sh/resource-policy: keep`: helm never deletes it."""
        return str(self.annotations.get(RESOURCE_POLICY, "")).strip() == "keep"

    def display(self) -> str:
        return self.key.display()


def resource_from_manifest(doc: Mapping[str, Any], *, source: str | None, release_namespace: str) -> Resource | None:
    """A `Resource` for a parsed manifest, or None for a document that is not an object (empty, no kind)."""
    if not isinstance(doc, Mapping):
        return None
    kind = doc.get("kind")
    metadata = doc.get("metadata")
    if not kind or not isinstance(metadata, Mapping):
        return None
    name = metadata.get("name") or metadata.get("generateName") or ""
    namespace = "" if kind in CLUSTER_SCOPED_KINDS else str(metadata.get("namespace") or release_namespace)
    return Resource(
        api_version=str(doc.get("apiVersion") or ""),
        kind=str(kind),
        namespace=namespace,
        name=str(name),
        body=doc,
        source=source,
    )


@dataclass(frozen=True)
class CrdDoc:
    """A CustomResourceDefinition and where the chart keeps it.

    `crds`: the chart's `crds/` folder (installed once, never upgraded or deleted by helm);
    `templates`: rendered from `templates/` (upgraded, and deleted with the release).
    """

    name: str
    location: Literal["crds", "templates"]
    body: Mapping[str, Any]
    path: str = ""

    @property
    def kept(self) -> bool:
        metadata = self.body.get("metadata") or {}
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        if not isinstance(annotations, Mapping):
            return False
        return str(annotations.get(RESOURCE_POLICY, "")).strip() == "keep"


# A values path (segments, so keys with dots stay unambiguous) and the value that switches it off.
FlagSetting = tuple[tuple[str, ...], bool]


@dataclass(frozen=True)
class ChartSnapshot:
    """One version of a chart, rendered: what the rules compare.

    resources: every manifest `helm template` rendered from `templates/` with the given values files
        (hooks and CRDs in templates included); identities are unique.
    crds: the CRDs of the `crds/` folder (read from the files, never rendered).
    values: the chart's own defaults (`values.yaml`).
    user_values: the merged values files given on the command line (the same for both versions).
    templates: template source text keyed by helm's `# Source:` path (`mychart/templates/x.yaml`).
    default_keys: the identities rendered with the chart defaults alone (no values files), or None
        when that is the same render (no values files) or could not be rendered.
    flag_renders: identities rendered with some flags switched off (see `gating`); filled by the
        shell for the new chart only, to confirm that a guard really gates a new resource.
    """

    resources: tuple[Resource, ...]
    crds: tuple[CrdDoc, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    user_values: Mapping[str, Any] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)
    default_keys: frozenset[ResourceKey] | None = None
    flag_renders: Mapping[tuple[FlagSetting, ...], frozenset[ResourceKey]] = field(default_factory=dict)

    def by_key(self) -> dict[ResourceKey, Resource]:
        return {resource.key: resource for resource in self.resources}

    def renders_by_default(self, key: ResourceKey) -> bool:
        return self.default_keys is None or key in self.default_keys
