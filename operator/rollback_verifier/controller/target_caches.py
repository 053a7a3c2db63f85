"""The Deployments and Pods that verdicts read, cached only for the targets being verified.

Per target Deployment (namespace, name), started by the first running verification that targets it and
stopped with the last: one informer on that Deployment alone (fieldSelector metadata.name) and, once its
selector is known, one on the pods it selects (labelSelector, the Deployment's own; a Deployment's
selector is immutable, a re-created one may differ and gets a new pod informer). The API server filters:
the operator never receives, parses or holds an object no verification needs, so its cost grows with the
verifications, not with the cluster, and no pod of an unverified namespace or Deployment is ingested.

Changes are handed to the event loop coalesced: informer threads add the changed target to a pending set,
and only the first addition after a drain schedules one call on the loop, which nudges every pending
target once. A burst of pod events costs one loop wake-up, and each verification is evaluated once per
wake-up, not once per event.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollback_verifier.controller.informer import Informer
from rollback_verifier.controller.kube import Kube
from rollback_verifier.core.rollout import DeploymentView, PodView, deployment_view, pod_view

Target = tuple[str, str]  # (namespace, Deployment name)
# Called on the event loop with a target whose Deployment, pods or cache state changed.
Changed = Callable[[str, str], None]
# Runs a callable on the event loop (loop.call_soon_threadsafe, with the context to run it in).
Schedule = Callable[[Callable[[], None]], None]


def _at_once(call: Callable[[], None]) -> None:
    call()  # without a schedule: `changed` is called in the informer's thread and hands over itself


@dataclass
class _Entry:
    deployment: Informer[DeploymentView]
    pods: Informer[PodView] | None = None
    selector: str | None = None  # the label selector the pod informer lists with
    users: int = 0
    version: int = 0  # changes with every change of the cached facts (never reused: see TargetCaches.version)


class TargetCaches:
    def __init__(self, kube: Kube, changed: Changed, where: str = "", schedule: Schedule | None = None) -> None:
        self.kube = kube
        self.changed = changed
        self.where = where  # e.g. " of cluster spoke": which cluster, in messages (empty: the own)
        self._schedule = schedule or _at_once
        self._entries: dict[Target, _Entry] = {}
        self._lock = threading.Lock()
        self._pending: set[Target] = set()
        self._pending_lock = threading.Lock()
        self._versions = itertools.count(1)

    # -- held by the verifications (from the event loop) ----------------------------------------
    def acquire(self, namespace: str, name: str) -> None:
        with self._lock:
            entry = self._entries.get((namespace, name))
            if entry is None:
                entry = self._entries[(namespace, name)] = _Entry(self._deployment_informer(namespace, name))
                entry.deployment.start()
            entry.users += 1

    def release(self, namespace: str, name: str) -> None:
        with self._lock:
            entry = self._entries.get((namespace, name))
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[(namespace, name)]
            entry.deployment.stop()
            if entry.pods is not None:
                entry.pods.stop()

    # -- the informers (their listeners run in the informers' threads) --------------------------
    def _deployment_informer(self, namespace: str, name: str) -> Informer[DeploymentView]:
        target = (namespace, name)

        def on_deployment(_kind: str, _name: str, view: DeploymentView | None) -> None:
            self._follow_selector(target, view)
            self._nudge(target)

        return Informer(
            f"Deployment {namespace}/{name}{self.where}",
            self.kube.deployments_lister(namespace),
            view=deployment_view,
            listener=on_deployment,
            on_state=lambda: self._nudge(target),
            namespace=namespace,
            selectors={"field_selector": f"metadata.name={name}"},
        )

    def _follow_selector(self, target: Target, view: DeploymentView | None) -> None:
        """The pod informer follows the Deployment's selector: started when first seen, replaced when a
        re-created Deployment selects differently, stopped when it is gone."""
        selector = view.selector.query() if view is not None else None
        with self._lock:
            entry = self._entries.get(target)
            if entry is None or entry.deployment.stopped or (entry.pods is not None and entry.selector == selector):
                return
            old, entry.pods, entry.selector = entry.pods, None, selector
            if selector is not None:
                entry.pods = self._pod_informer(target, selector).start()
        if old is not None:
            old.stop()

    def _pod_informer(self, target: Target, selector: str) -> Informer[PodView]:
        namespace, name = target
        return Informer(
            f"pods of {namespace}/{name}{self.where}",
            self.kube.pods_lister(namespace),
            view=pod_view,
            listener=lambda _kind, _name, _view: self._nudge(target),
            on_state=lambda: self._nudge(target),
            namespace=namespace,
            selectors={"label_selector": selector},
        )

    def _nudge(self, target: Target) -> None:
        # Called after the informer updated what it holds: a version read before the facts never labels
        # newer facts than it stands for.
        entry = self._entries.get(target)
        if entry is not None:
            entry.version = next(self._versions)
        with self._pending_lock:
            first = not self._pending
            self._pending.add(target)
        if first:
            self._schedule(self._drain)

    def _drain(self) -> None:  # on the event loop
        with self._pending_lock:
            pending, self._pending = self._pending, set()
        for namespace, name in sorted(pending):
            self.changed(namespace, name)

    # -- reads (from the event loop) -------------------------------------------------------------
    def version(self, namespace: str, name: str) -> int | None:
        """A number that changes whenever the target's cached Deployment, pods or cache state change (read
        it before reading them); None when the target is not cached."""
        entry = self._entries.get((namespace, name))
        return entry.version if entry else None

    def deployment(self, namespace: str, name: str) -> DeploymentView | None:
        entry = self._entries.get((namespace, name))
        return entry.deployment.get(name) if entry else None

    def pods(self, namespace: str, name: str) -> list[PodView]:
        """The pods the target Deployment's selector selects (all its ReplicaSets', terminating ones too)."""
        entry = self._entries.get((namespace, name))
        pods = entry.pods if entry else None
        return pods.items() if pods is not None else []

    def unsynced(self, namespace: str, name: str) -> str | None:
        """None when the target's caches are synced and working, else what is wrong."""
        entry = self._entries.get((namespace, name))
        if entry is None:
            return f"no caches for {namespace}/{name}"
        informers: list[Informer[Any]] = [entry.deployment]
        view = entry.deployment.get(name) if entry.deployment.synced.is_set() else None
        if view is not None and (selector := view.selector.query()) is not None:
            # The pod informer starts (or follows a new selector) from the Deployment's event: until then
            # the pods held are not (or not yet) the ones this Deployment selects.
            if entry.pods is None or entry.selector != selector:
                return f"listing pods of {namespace}/{name}"
            informers.append(entry.pods)
        for informer in informers:
            if informer.error is not None:
                return f"cannot list/watch {informer.what}: {informer.error}"
            if not informer.synced.is_set():
                return f"listing {informer.what}"
        return None

    def failing(self) -> tuple[float, str] | None:
        """Since when (wall time) and why the caches cannot list/watch, over every target cached: the
        oldest failure still going on; None when none fails."""
        with self._lock:
            informers = [i for e in self._entries.values() for i in (e.deployment, e.pods) if i is not None]
        failures = [(i.error_since, f"cannot list/watch {i.what}: {i.error}") for i in informers if i.error]
        return min(((since or 0.0, error) for since, error in failures), default=None)

    @property
    def watches(self) -> int:
        """How many watches are open now (a target's Deployment, and its pods once its selector is known)."""
        with self._lock:
            return sum(1 + (e.pods is not None) for e in self._entries.values())

    def not_synced(self) -> list[str]:
        """What is not synced yet, over every target cached: empty when all are (for /readyz)."""
        with self._lock:
            targets = sorted(self._entries)
        return [problem for ns, name in targets if (problem := self.unsynced(ns, name)) is not None]
