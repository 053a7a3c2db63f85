"""Plain views of Deployments and Pods, and kubectl's rollout rule, as pure functions.

The views keep only what a verdict needs, so the operator's in-memory caches stay small and
the evaluation is a function of plain data that unit tests can build by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Mapping[str, str] = field(default_factory=dict)
    # (key, operator, values) with operator In | NotIn | Exists | DoesNotExist
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if not self.match_labels and not self.match_expressions:
            return False  # an empty selector selects nothing for a Deployment (the API forbids it anyway)
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                return False
        return True

    def query(self) -> str | None:
        """The same selector in the API's labelSelector syntax, so that the API server sends only the pods
        it selects; None when it selects nothing (as `matches` says for every pod)."""
        if not self.match_labels and not self.match_expressions:
            return None
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for key, op, values in self.match_expressions:
            listed = ",".join(sorted(values))
            if op == "In":
                parts.append(f"{key} in ({listed})")
            elif op == "NotIn":
                parts.append(f"{key} notin ({listed})")
            elif op == "Exists":
                parts.append(key)
            elif op == "DoesNotExist":
                parts.append(f"!{key}")
            else:
                return None
        return ",".join(parts)


@dataclass(frozen=True)
class ContainerView:
    name: str
    image: str  # the image the spec asks for
    image_id: str = ""  # what the runtime reports (status), "" when not reported
    ready: bool = False


@dataclass(frozen=True)
class PodView:
    name: str
    namespace: str
    labels: Mapping[str, str]
    ready: bool
    terminating: bool
    containers: tuple[ContainerView, ...]
    init_containers: tuple[ContainerView, ...] = ()

    def container(self, name: str) -> ContainerView | None:
        for c in (*self.containers, *self.init_containers):
            if c.name == name:
                return c
        return None


@dataclass(frozen=True)
class DeploymentView:
    name: str
    namespace: str
    generation: int
    observed_generation: int
    spec_replicas: int
    paused: bool
    selector: LabelSelector
    template_images: Mapping[str, str]  # container name -> image
    template_init_images: Mapping[str, str]
    replicas: int
    updated_replicas: int
    available_replicas: int
    progressing_reason: str | None
    progressing_message: str | None


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _images(containers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in containers or ():
        if isinstance(c, Mapping) and c.get("name"):
            out[str(c["name"])] = str(c.get("image") or "")
    return out


def selector_from(raw: Any) -> LabelSelector:
    raw = raw if isinstance(raw, Mapping) else {}
    expressions = []
    for e in raw.get("matchExpressions") or ():
        if isinstance(e, Mapping):
            values = tuple(str(v) for v in (e.get("values") or ()))
            expressions.append((str(e.get("key", "")), str(e.get("operator", "")), values))
    return LabelSelector(_str_map(raw.get("matchLabels")), tuple(expressions))


def deployment_view(obj: Mapping[str, Any]) -> DeploymentView:
    """A Deployment as the API returns it (a dict) -> the parts a verdict needs."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    progressing = next(
        (c for c in status.get("conditions") or () if isinstance(c, Mapping) and c.get("type") == "Progressing"),
        {},
    )
    replicas = spec.get("replicas")
    return DeploymentView(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        spec_replicas=1 if replicas is None else _int(replicas, 1),  # the API defaults replicas to 1
        paused=bool(spec.get("paused")),
        selector=selector_from(spec.get("selector")),
        template_images=_images(pod_spec.get("containers")),
        template_init_images=_images(pod_spec.get("initContainers")),
        replicas=_int(status.get("replicas")),
        updated_replicas=_int(status.get("updatedReplicas")),
        available_replicas=_int(status.get("availableReplicas")),
        progressing_reason=progressing.get("reason"),
        progressing_message=progressing.get("message"),
    )


def _container_views(specs: Any, statuses: Any) -> tuple[ContainerView, ...]:
    by_name = {s.get("name"): s for s in statuses or () if isinstance(s, Mapping)}
    views = []
    for c in specs or ():
        if not isinstance(c, Mapping) or not c.get("name"):
            continue
        s = by_name.get(c["name"], {})
        views.append(
            ContainerView(
                name=str(c["name"]),
                image=str(c.get("image") or ""),
                image_id=str(s.get("imageID") or ""),
                ready=bool(s.get("ready")),
            )
        )
    return tuple(views)


def pod_view(obj: Mapping[str, Any]) -> PodView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return PodView(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        labels=_str_map(meta.get("labels")),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        containers=_container_views(spec.get("containers"), status.get("containerStatuses")),
        init_containers=_container_views(spec.get("initContainers"), status.get("initContainerStatuses")),
    )


@dataclass(frozen=True)
class RolloutState:
    complete: bool
    failed: bool  # ProgressDeadlineExceeded: waiting will not help
    message: str


def evaluate_rollout(d: DeploymentView) -> RolloutState:
    """kubectl rollout status's rule (kubectl/pkg/polymorphichelpers/rollout_status.go)."""
    if d.observed_generation < d.generation:
        return RolloutState(False, False, "waiting for the Deployment spec update to be observed")
    if d.progressing_reason == PROGRESS_DEADLINE_EXCEEDED:
        return RolloutState(False, True, f"exceeded its progress deadline ({d.progressing_message or 'no message'})")
    paused = " (the Deployment is paused: resume it to roll out)" if d.paused else ""
    if d.updated_replicas < d.spec_replicas:
        return RolloutState(
            False, False, f"{d.updated_replicas} of {d.spec_replicas} new replicas have been updated{paused}"
        )
    if d.replicas > d.updated_replicas:
        return RolloutState(False, False, f"{d.replicas - d.updated_replicas} old replicas are pending termination")
    if d.available_replicas < d.updated_replicas:
        return RolloutState(
            False, False, f"{d.available_replicas} of {d.updated_replicas} updated replicas are available"
        )
    return RolloutState(True, False, "successfully rolled out")


def pods_of(d: DeploymentView, pods: Iterable[PodView]) -> list[PodView]:
    """The Deployment's live pods: selected by its selector, not terminating (surge/old pods on their way out
    are not what the Deployment runs)."""
    return [p for p in pods if p.namespace == d.namespace and not p.terminating and d.selector.matches(p.labels)]
