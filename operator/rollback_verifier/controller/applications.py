"""A cache of Argo CD Applications in one namespace, kept by a watch (not polling).

The operator's kopf watches cover the controller namespaces only; Applications live in Argo CD's
namespace, where the operator is granted nothing but get/list/watch on applications. So this is an
informer of its own.
"""

from __future__ import annotations

from typing import Any

from rollback_verifier.controller.informer import Informer, Listener
from rollback_verifier.controller.kube import Kube

# Without Argo CD's Application CRD (HTTP 404): retry, backing off to a rare check, so an operator on a
# cluster without Argo CD makes almost no requests.
MISSING_RETRY_SECONDS = (30.0, 900.0)


def _as_is(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def application_watcher(kube: Kube, namespace: str, listener: Listener | None = None) -> Informer[dict[str, Any]]:
    return Informer(
        f"Argo CD Applications in {namespace}",
        kube.applications_lister(namespace),
        view=_as_is,
        listener=listener,
        missing_retry_seconds=MISSING_RETRY_SECONDS,
        namespace=namespace,
    )
