"""The thin layer over the Kubernetes API that the operator and the CLI share."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollback_verifier import GROUP, PLURAL, VERSION
from rollback_verifier.errors import ClusterError, UsageError

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "applications"
# Client-side timeout of every plain request: a hung API server must not hang a verification.
REQUEST_TIMEOUT = (5, 30)
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): re-read it and decide again."""


class KubeconfigError(Exception):
    """No usable client configuration: no kubeconfig, a broken one, or an unknown context."""


def load_client_config(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """The given kubeconfig/context; else in-cluster config when running in a pod, else the kubeconfig
    ($KUBECONFIG or ~/.kube/config). Also becomes the client library's default configuration.
    Raises KubeconfigError, saying what is wrong."""
    try:
        if kubeconfig or context:
            config.load_kube_config(config_file=kubeconfig, context=context)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # A YAML that is not a kubeconfig surfaces as any of these from the client library.
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        detail = str(exc).strip() or type(exc).__name__
        raise KubeconfigError(f"no usable kubeconfig ({where}): {detail}") from None
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 16  # verifications write status concurrently
    return client.ApiClient(cfg)


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """A Kube for the CLI: a configuration problem is a ClusterError (one line, exit 3)."""
    try:
        return Kube(load_client_config(kubeconfig, context))
    except KubeconfigError as exc:
        raise ClusterError(str(exc)) from None


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl would use: the context's, else the pod's own (in-cluster), else default."""
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        namespace = ((chosen or {}).get("context") or {}).get("namespace")
        if namespace:
            return str(namespace)
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    try:
        return Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


@contextmanager
def cluster_errors(host: Callable[[], str]) -> Iterator[None]:
    """Turn "cannot reach or read the cluster" into ClusterError (one line, exit 3); anything else,
    a bug included, passes through unchanged."""
    try:
        yield
    except (UsageError, ClusterError):
        raise
    except Exception as exc:
        problem = cluster_problem(exc, host())
        if problem is None:
            raise
        raise ClusterError(problem) from None


def cluster_problem(exc: BaseException, host: str) -> str | None:
    """One line saying why the cluster could not be reached or read, or None when `exc` is not that."""
    if isinstance(exc, ApiException):
        if exc.status == 401:
            return (
                f"the cluster at {host} refused the credentials (401 Unauthorized): "
                "log in again or choose another --context"
            )
        if exc.status == 403:
            return f"access denied (403 Forbidden): {_api_message(exc)}"
        return f"the cluster at {host} answered {exc.status} {exc.reason}: {_api_message(exc)}"
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        reason = getattr(exc, "reason", None) or exc
        return f"cannot reach the cluster at {host}: {reason} (is it up? --kubeconfig and --context choose another)"
    return None


def _api_message(exc: ApiException) -> str:
    """The Status message the API server sent (it names the user, verb and resource), else the reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "no message")


# The Python names of list/watch parameters (as kubernetes.watch passes them) and their names in a URL.
_QUERY_NAMES = {
    "watch": "watch",
    "field_selector": "fieldSelector",
    "label_selector": "labelSelector",
    "resource_version": "resourceVersion",
    "timeout_seconds": "timeoutSeconds",
    "allow_watch_bookmarks": "allowWatchBookmarks",
}


class Rest:
    """Requests as plain JSON through the client's ApiClient (its configuration, authentication, TLS and
    connection pool), without the generated API classes and models: importing and building those
    (CoreV1Api, AppsV1Api, CustomObjectsApi and the pydantic models they pull in) took about a second of
    CPU at every start, most of the operator's time to its first verdict, for objects turned back into
    dicts at once."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: Any = REQUEST_TIMEOUT,
        preload: bool = True,
    ) -> Any:
        """The decoded JSON answer (or, with preload=False, the open urllib3 response, for a watch).
        A status other than 2xx raises ApiException, as the generated classes did."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, v) for k, v in (query or {}).items() if v is not None and v != ""]
        serialized = self.api_client.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(*serialized, _request_timeout=timeout)
        if not preload and 200 <= response.status <= 299:
            return response.response
        response.read()
        if not 200 <= response.status <= 299:
            text = response.data.decode("utf-8", "replace") if response.data else None
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(response.data) if response.data else {}

    def lister(self, path: str) -> Callable[..., Any]:
        """The list (and, with watch=True, watch) function of a collection, called as the informers and
        kubernetes.watch call the generated ones (`_preload_content=False`: the raw response)."""

        def list_or_watch(
            *, _preload_content: bool = True, _request_timeout: Any = REQUEST_TIMEOUT, **params: Any
        ) -> Any:
            query = {_QUERY_NAMES[k]: v for k, v in params.items()}
            return self.request("GET", path, query=query, timeout=_request_timeout, preload=_preload_content)

        return list_or_watch

    def items(self, path: str, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The objects a list of the collection at `path` returns."""
        return list(cast(dict[str, Any], self.request("GET", path, query=query)).get("items") or [])

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        """The object, None when it does not exist (404)."""
        try:
            return cast(dict[str, Any], self.request("GET", path))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def _segment(name: str) -> str:
    return quote(name, safe="")


def _namespaced(group_version: str, namespace: str, plural: str, name: str = "") -> str:
    """The path of a namespaced collection (or of one object in it): `v1` is the core group."""
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    path = f"{root}/namespaces/{_segment(namespace)}/{plural}"
    return f"{path}/{_segment(name)}" if name else path


VERIFICATIONS = f"{GROUP}/{VERSION}"
ARGO = f"{ARGO_GROUP}/{ARGO_VERSION}"


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.rest = Rest(api_client)

    # -- what the informers list and watch -------------------------------------------------------
    def deployments_lister(self, namespace: str) -> Callable[..., Any]:
        return self.rest.lister(_namespaced("apps/v1", namespace, "deployments"))

    def pods_lister(self, namespace: str) -> Callable[..., Any]:
        return self.rest.lister(_namespaced("v1", namespace, "pods"))

    def applications_lister(self, namespace: str) -> Callable[..., Any]:
        return self.rest.lister(_namespaced(ARGO, namespace, ARGO_PLURAL))

    def server_version(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.rest.request("GET", "/version"))

    # -- RollbackVerifications -------------------------------------------------------------------
    def get_verification(self, namespace: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.rest.request("GET", _namespaced(VERIFICATIONS, namespace, PLURAL, name)))

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """Merge-patch status. With resource_version, the write only lands if nobody wrote in between
        (the API server treats metadata.resourceVersion in a patch as a precondition)."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        path = _namespaced(VERIFICATIONS, namespace, PLURAL, name) + "/status"
        try:
            return cast(
                dict[str, Any],
                self.rest.request("PATCH", path, body=body, content_type="application/merge-patch+json"),
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(name) from exc
            raise

    def create_verification(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create; None when an object of that name exists already (creation is idempotent by name)."""
        try:
            return cast(
                dict[str, Any],
                self.rest.request("POST", _namespaced(VERIFICATIONS, namespace, PLURAL), body=dict(body)),
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def list_verifications(self, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        """RollbackVerifications of one namespace, or of all (None), optionally by label selector."""
        path = f"/apis/{VERIFICATIONS}/{PLURAL}" if namespace is None else _namespaced(VERIFICATIONS, namespace, PLURAL)
        return self.rest.items(path, {"labelSelector": label_selector})

    def delete_verification(self, namespace: str, name: str, uid: str) -> None:
        """Delete that very object (a uid precondition: never a newer one of the same name); gone is fine."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        try:
            self.rest.request("DELETE", _namespaced(VERIFICATIONS, namespace, PLURAL, name), body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def post_event_once(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event about `obj` under a name derived from the object and the reason: posted twice (an
        operator killed between its status write and its Event, then resuming), it exists once."""
        meta = obj.get("metadata") or {}
        name, namespace, uid = str(meta.get("name")), str(meta.get("namespace")), str(meta.get("uid"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        involved = {
            "apiVersion": VERIFICATIONS,
            "kind": "RollbackVerification",
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": meta.get("resourceVersion"),
        }
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name[:180]}.{uid[:18]}.{reason.lower()[:40]}", "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "rollback-verifier"},
            "reportingComponent": "rollback-verifier",
        }
        try:
            self.rest.request("POST", _namespaced("v1", namespace, "events"), body=event)
        except ApiException as exc:
            if exc.status != 409:
                raise

    # -- reads -----------------------------------------------------------------------------------
    def list_events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """The Events about one object, oldest first."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        events = self.rest.items(_namespaced("v1", namespace, "events"), {"fieldSelector": selector})
        return sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's `.data` as the API returns it (base64 values). Never logged, never in messages."""
        return self.read_secret(namespace, name)[0]

    def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """A Secret's `.data` (base64 values; never logged, never in messages) and its labels."""
        try:
            secret = self.rest.request("GET", _namespaced("v1", namespace, "secrets", name))
        except ApiException as exc:
            raise LookupError(f"cannot read Secret {namespace}/{name} (HTTP {exc.status})") from None
        labels = (secret.get("metadata") or {}).get("labels") or {}
        data = secret.get("data") or {}
        return {str(k): str(v) for k, v in data.items()}, {str(k): str(v) for k, v in labels.items()}

    def list_secrets_data(self, namespace: str, label_selector: str) -> list[tuple[str, dict[str, str]]]:
        """(name, `.data` with base64 values) of the Secrets the selector picks. Never logged."""
        found = self.rest.items(_namespaced("v1", namespace, "secrets"), {"labelSelector": label_selector})
        return [
            (str(s["metadata"]["name"]), {str(k): str(v) for k, v in (s.get("data") or {}).items()})
            for s in found
            if s.get("metadata")
        ]

    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An Argo CD Application, None when it does not exist."""
        return self.rest.get_or_none(_namespaced(ARGO, namespace, ARGO_PLURAL, name))

    def list_deployments(self, namespace: str) -> list[dict[str, Any]]:
        return self.rest.items(_namespaced("apps/v1", namespace, "deployments"))

    def list_pods(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        return self.rest.items(_namespaced("v1", namespace, "pods"), {"labelSelector": label_selector})

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment as the API server has it now; None when it does not exist."""
        return self.rest.get_or_none(_namespaced("apps/v1", namespace, "deployments", name))
