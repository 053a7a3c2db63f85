"""A cache of Argo CD Applications in one namespace, kept by a watch (not polling).

The operator's kopf watches cover the controller namespaces only; Applications live in Argo CD's
namespace, where the operator is granted nothing but get/list/watch on applications. So this is a
watch of its own, with server and client timeouts so that an idle stream never stalls silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from rollback_verifier.kube import ARGO_GROUP, ARGO_PLURAL, ARGO_VERSION, Kube

log = logging.getLogger(__name__)
SERVER_TIMEOUT = 270  # the API server ends the watch after this; we re-watch from the last resourceVersion
CLIENT_TIMEOUT = 300  # the socket read gives up after this, if the server went silent
# After an error (e.g. Argo CD's Application CRD is not installed): retry, backing off to a rare check,
# so an operator on a cluster without Argo CD makes almost no requests.
RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 900

Listener = Callable[[str, dict[str, Any]], None]  # (event type, Application)


class ApplicationWatcher:
    def __init__(self, kube: Kube, namespace: str, listener: Listener | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.listener = listener
        self._apps: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()  # set once the first list has been loaded
        self._thread = threading.Thread(target=self._run, name=f"watch-applications-{namespace}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._apps.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._apps)

    def _emit(self, kind: str, app: dict[str, Any]) -> None:
        if self.listener is not None:
            try:
                self.listener(kind, app)
            except Exception:  # a listener bug must not kill the watch
                log.exception("application listener failed")

    def _list(self) -> str:
        result: dict[str, Any] = self.kube.custom.list_namespaced_custom_object(  # type: ignore[assignment]
            ARGO_GROUP, ARGO_VERSION, self.namespace, ARGO_PLURAL, _request_timeout=(5, 60)
        )
        items = {i["metadata"]["name"]: i for i in result.get("items", [])}
        with self._lock:
            self._apps = items
        self.synced.set()
        for app in items.values():
            self._emit("ADDED", app)
        return str(result["metadata"]["resourceVersion"])

    def _run(self) -> None:
        warned = False
        retry = RETRY_SECONDS
        while not self._stop.is_set():
            try:
                rv = self._list()
                warned, retry = False, RETRY_SECONDS
                while not self._stop.is_set():
                    rv = self._watch(rv)
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list afresh
                    continue
                if not warned:
                    log.warning(
                        "cannot watch Argo CD Applications in %s (HTTP %s: %s); retrying, backing off to every %ss",
                        self.namespace,
                        exc.status,
                        exc.reason,
                        MAX_RETRY_SECONDS,
                    )
                    warned = True
                self.synced.set()  # nothing to wait for: the Applications are unknown
                self._stop.wait(retry)
                retry = min(retry * 2, MAX_RETRY_SECONDS)
            except Exception as exc:
                log.warning("Application watch in %s broke (%s); re-listing", self.namespace, exc)
                self._stop.wait(2)

    def _watch(self, rv: str) -> str:
        w = watch.Watch()
        stream = w.stream(
            self.kube.custom.list_namespaced_custom_object,
            ARGO_GROUP,
            ARGO_VERSION,
            self.namespace,
            ARGO_PLURAL,
            resource_version=rv,
            timeout_seconds=SERVER_TIMEOUT,
            _request_timeout=(5, CLIENT_TIMEOUT),
            allow_watch_bookmarks=True,
        )
        started = time.monotonic()
        for event in stream:
            if self._stop.is_set():
                w.stop()
                break
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                raise ApiException(status=code or 500, reason=str(obj))
            rv = obj["metadata"]["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            with self._lock:
                if kind == "DELETED":
                    self._apps.pop(name, None)
                else:
                    self._apps[name] = obj
            self._emit(kind, obj)
        log.debug("Application watch ended after %.0fs; resuming at %s", time.monotonic() - started, rv)
        return rv
