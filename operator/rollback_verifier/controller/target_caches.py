"""The Deployments and Pods that verdicts read, cached only where something is being verified.

One Deployment informer and one Pod informer per target namespace, started by the first running
verification that targets the namespace and stopped with the last: the operator's cost grows with the
verifications, not with the cluster, and no pod event of an unverified namespace is ever ingested.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rollback_verifier.controller.informer import Informer
from rollback_verifier.controller.kube import Kube
from rollback_verifier.core.rollout import DeploymentView, PodView, deployment_view, pod_view

V = TypeVar("V")

# (namespace, Deployment name or None for "a pod changed"); called in an informer's thread.
Changed = Callable[[str, str | None], None]


@dataclass
class _Namespace:
    deployments: Informer[DeploymentView]
    pods: Informer[PodView]
    users: int = 0


class TargetCaches:
    def __init__(self, kube: Kube, changed: Changed, where: str = "") -> None:
        self.kube = kube
        self.changed = changed
        self.where = where  # e.g. " of cluster spoke": which cluster, in messages (empty: the own)
        self._namespaces: dict[str, _Namespace] = {}
        self._lock = threading.Lock()

    def acquire(self, namespace: str) -> None:
        with self._lock:
            entry = self._namespaces.get(namespace)
            if entry is None:
                entry = self._start(namespace)
                self._namespaces[namespace] = entry
            entry.users += 1

    def release(self, namespace: str) -> None:
        with self._lock:
            entry = self._namespaces.get(namespace)
            if entry is None:
                return
            entry.users -= 1
            if entry.users <= 0:
                del self._namespaces[namespace]
                entry.deployments.stop()
                entry.pods.stop()

    def _start(self, namespace: str) -> _Namespace:
        def on_state() -> None:  # synced, or an error: the verifications there say it
            self.changed(namespace, None)

        def informer(
            what: str, list_fn: Callable[..., Any], view: Callable[[dict[str, Any]], V], by_name: bool
        ) -> Informer[V]:
            return Informer(
                f"{what} in {namespace}{self.where}",
                list_fn,
                namespace,
                view=view,
                # A Deployment's change nudges the verifications of that Deployment; a pod's, those of the namespace.
                listener=lambda _kind, name, _view: self.changed(namespace, name if by_name else None),
                on_state=on_state,
                namespace=namespace,
            )

        deployments = informer("Deployments", self.kube.apps.list_namespaced_deployment, deployment_view, True)
        pods = informer("pods", self.kube.core.list_namespaced_pod, pod_view, False)
        return _Namespace(deployments.start(), pods.start())

    # -- reads (from the event loop) -----------------------------------------------------------
    def deployment(self, namespace: str, name: str) -> DeploymentView | None:
        entry = self._namespaces.get(namespace)
        return entry.deployments.get(name) if entry else None

    def pods(self, namespace: str) -> list[PodView]:
        entry = self._namespaces.get(namespace)
        return entry.pods.items() if entry else []

    def unsynced(self, namespace: str) -> str | None:
        """None when both caches of the namespace are synced and working, else what is wrong."""
        entry = self._namespaces.get(namespace)
        if entry is None:
            return f"no caches for {namespace}"
        for informer in (entry.deployments, entry.pods):
            if informer.error is not None:
                return f"cannot list/watch {informer.what}: {informer.error}"
            if not informer.synced.is_set():
                return f"listing {informer.what}"
        return None

    def failing(self) -> tuple[float, str] | None:
        """Since when (wall time) and why the caches cannot list/watch, over every namespace cached:
        the oldest failure still going on; None when none fails."""
        with self._lock:
            informers = [i for entry in self._namespaces.values() for i in (entry.deployments, entry.pods)]
        failures = [(i.error_since, f"cannot list/watch {i.what}: {i.error}") for i in informers if i.error]
        return min(((since or 0.0, error) for since, error in failures), default=None)

    @property
    def watches(self) -> int:
        """How many watches are open now (two per namespace cached)."""
        with self._lock:
            return 2 * len(self._namespaces)

    def not_synced(self) -> list[str]:
        """What is not synced yet, over every namespace cached: empty when all are (for /readyz)."""
        with self._lock:
            namespaces = list(self._namespaces)
        return [problem for ns in namespaces if (problem := self.unsynced(ns)) is not None]
