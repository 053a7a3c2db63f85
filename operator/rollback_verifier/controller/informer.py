"""Plain list+watch informers: one resource in one namespace, in a thread of its own.

An informer lists, then watches from the list's resourceVersion (re-listing on 410 Gone), keeps a dict
name -> view of the objects, and hands each change to a listener. Both timeouts are set, so that an
idle stream never stalls silently: the API server ends the watch after SERVER_TIMEOUT, the socket
read gives up after CLIENT_TIMEOUT. It takes the API function to call, so the same piece serves any
resource and any API client (another cluster's, later).

Objects are parsed as JSON and reduced to views straight away (no client models, no deep copies, no
diffs): the cost per event is one json.loads and one view. A modification that leaves the view as it was
(a pod's node or phase set, a timestamp or an annotation changed) is not handed on to the listener.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

V = TypeVar("V")
SERVER_TIMEOUT = 270
CLIENT_TIMEOUT = 300
LIST_TIMEOUT = (5, 60)

# (event type, name, view or None when deleted); called in the informer's thread.
Listener = Callable[[str, str, Any], None]


class Informer(Generic[V]):
    def __init__(
        self,
        what: str,
        list_fn: Callable[..., Any],
        *args: Any,
        view: Callable[[dict[str, Any]], V],
        listener: Listener | None = None,
        on_state: Callable[[], None] | None = None,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
        missing_retry_seconds: tuple[float, float] | None = None,
        namespace: str = "",
        selectors: Mapping[str, str] | None = None,
    ) -> None:
        self.what = what  # e.g. "pods in agents", for messages
        self.namespace = namespace
        self._list_fn, self._args, self._view = list_fn, args, view
        # field_selector / label_selector of both the list and the watch: the API server filters, so what
        # is not selected is never sent, parsed or held here.
        self._selectors = dict(selectors or {})
        self.listener = listener
        self._on_state = on_state  # synced or error changed
        self._retry, self._max_retry = retry_seconds, max_retry_seconds
        # A resource that does not exist (HTTP 404: e.g. no Argo CD installed) is retried on a slower
        # schedule (first, longest), so such a cluster costs almost no requests.
        self._missing_retry = missing_retry_seconds
        self._items: dict[str, V] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()  # set once the first list has been loaded
        self.settled = threading.Event()  # set once the first list has been loaded or has failed
        self.error: str | None = None  # why the last list or watch failed; None when it works
        self.error_since: float | None = None  # wall time of the first failure of the current outage
        self._stream: watch.Watch | None = None  # the watch open now, closed by stop()
        self._thread = threading.Thread(target=self._run, name=f"watch {what}", daemon=True)

    # -- use ---------------------------------------------------------------------------------
    def start(self) -> Informer[V]:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Nothing is delivered after this; the open watch is closed now (its socket shut down), so that
        the API server does not keep serving it until its timeout."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.stop()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def get(self, name: str) -> V | None:
        with self._lock:
            return self._items.get(name)

    def items(self) -> list[V]:
        with self._lock:
            return list(self._items.values())

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    # -- the loop ----------------------------------------------------------------------------
    def _emit(self, kind: str, name: str, item: V | None) -> None:
        if self.listener is not None and not self._stop.is_set():
            try:
                self.listener(kind, name, item)
            except Exception:  # a listener bug must not kill the watch
                log.exception("listener of %s failed", self.what)

    def _set_state(self, error: str | None) -> None:
        changed = error != self.error
        self.error = error
        if error is None:
            self.error_since = None
        elif self.error_since is None:
            self.error_since = time.time()
        if changed and self._on_state is not None:
            self._on_state()

    def _list(self) -> str:
        response = self._list_fn(*self._args, **self._selectors, _preload_content=False, _request_timeout=LIST_TIMEOUT)
        result = json.loads(response.data)
        items = {}
        for obj in result.get("items") or ():
            items[obj["metadata"]["name"]] = self._view(obj)
        with self._lock:
            before, self._items = self._items, items
        for name in before.keys() - items.keys():
            self._emit("DELETED", name, None)
        first = not self.synced.is_set()
        self.synced.set()
        self.settled.set()
        self._set_state(None)
        if first and self._on_state is not None:
            self._on_state()
        for name, item in items.items():
            self._emit("ADDED", name, item)
        return str(result["metadata"]["resourceVersion"])

    def _run(self) -> None:
        retry = self._retry
        warned = False
        while not self._stop.is_set():
            try:
                rv = self._list()
                retry, warned = self._retry, False
                while not self._stop.is_set():
                    rv = self._watch(rv)
            except ApiException as exc:
                if self._stop.is_set():
                    break
                if exc.status == 410:  # our resourceVersion is too old: list afresh
                    continue
                if exc.status == 404 and self._missing_retry is not None:
                    retry = min(max(retry, self._missing_retry[0]), self._missing_retry[1])
                    cap = self._missing_retry[1]
                else:
                    cap = self._max_retry
                self._failed(f"HTTP {exc.status} {exc.reason}", warned, cap)
                warned = True
                self._stop.wait(retry)
                retry = min(retry * 2, cap)
            except Exception as exc:  # the API server unreachable, a broken stream
                if self._stop.is_set():
                    break  # stop() closed the stream
                self._failed(str(exc) or type(exc).__name__, warned, self._max_retry)
                warned = True
                self._stop.wait(retry)
                retry = min(retry * 2, self._max_retry)

    def _failed(self, error: str, warned: bool, cap: float) -> None:
        # One warning per outage, then quiet retries backing off.
        if not warned:
            log.warning("cannot list/watch %s (%s); retrying, backing off to every %gs", self.what, error, cap)
        else:
            log.debug("still cannot list/watch %s (%s)", self.what, error)
        self.settled.set()
        self._set_state(error)

    def _watch(self, rv: str) -> str:
        w = watch.Watch()
        self._stream = w
        if self._stop.is_set():
            return rv
        stream = w.stream(
            self._list_fn,
            *self._args,
            **self._selectors,
            resource_version=rv,
            timeout_seconds=SERVER_TIMEOUT,
            _request_timeout=(5, CLIENT_TIMEOUT),
            allow_watch_bookmarks=True,
            deserialize=False,
        )
        started = time.monotonic()
        for event in stream:
            if self._stop.is_set():
                w.stop()
                break
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                raise ApiException(status=code or 500, reason=str(obj.get("message") if isinstance(obj, dict) else obj))
            rv = obj["metadata"]["resourceVersion"]
            if kind == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                with self._lock:
                    self._items.pop(name, None)
                self._emit(kind, name, None)
            else:
                item = self._view(obj)
                with self._lock:
                    before = self._items.get(name)
                    self._items[name] = item
                # Nothing the view holds changed (a timestamp, an annotation): nothing to tell. A view that is
                # the object itself always changed (its resourceVersion), and is not compared field by field.
                if kind == "MODIFIED" and item is not obj and before == item:
                    continue
                self._emit(kind, name, item)
        log.debug("watch of %s ended after %.0fs; resuming at %s", self.what, time.monotonic() - started, rv)
        return rv
