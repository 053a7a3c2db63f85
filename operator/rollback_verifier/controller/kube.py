"""The thin layer over the Kubernetes API that the operator and the CLI share."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

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


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    # -- RollbackVerifications -------------------------------------------------------------------
    def get_verification(self, namespace: str, name: str) -> dict[str, Any]:
        obj = cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        return obj

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        """Merge-patch status. With resource_version, the write only lands if nobody wrote in between
        (the API server treats metadata.resourceVersion in a patch as a precondition)."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            obj = cast(
                dict[str, Any],
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(name) from exc
            raise
        return obj

    def create_verification(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create; None when an object of that name exists already (creation is idempotent by name)."""
        try:
            obj = cast(
                dict[str, Any],
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, dict(body), _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return obj

    def list_verifications(self, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        """RollbackVerifications of one namespace, or of all (None), optionally by label selector."""
        if namespace is None:
            found = self.custom.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            found = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
            )
        return list(cast(dict[str, Any], found).get("items") or [])

    def delete_verification(self, namespace: str, name: str, uid: str) -> None:
        """Delete that very object (a uid precondition: never a newer one of the same name); gone is fine."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def post_event_once(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event about `obj` under a name derived from the object and the reason: posted twice (an
        operator killed between its status write and its Event, then resuming), it exists once."""
        meta = obj.get("metadata") or {}
        name, namespace, uid = str(meta.get("name")), str(meta.get("namespace")), str(meta.get("uid"))
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{name[:180]}.{uid[:18]}.{reason.lower()[:40]}", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="RollbackVerification",
                name=name,
                namespace=namespace,
                uid=uid,
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type=type_,
            count=1,
            first_timestamp=now,
            last_timestamp=now,
            source=client.V1EventSource(component="rollback-verifier"),
            reporting_component="rollback-verifier",
        )
        try:
            self.core.create_namespaced_event(namespace, event, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 409:
                raise

    # -- reads -----------------------------------------------------------------------------------
    def list_events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """The Events about one object, oldest first."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        items = self.core.list_namespaced_event(
            namespace, field_selector=selector, _request_timeout=REQUEST_TIMEOUT
        ).items
        events = [self.api_client.sanitize_for_serialization(e) for e in items]
        return sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's `.data` as the API returns it (base64 values). Never logged, never in messages."""
        return self.read_secret(namespace, name)[0]

    def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """A Secret's `.data` (base64 values; never logged, never in messages) and its labels."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            raise LookupError(f"cannot read Secret {namespace}/{name} (HTTP {exc.status})") from None
        labels = (secret.metadata.labels if secret.metadata else None) or {}
        return {str(k): str(v) for k, v in (secret.data or {}).items()}, {str(k): str(v) for k, v in labels.items()}

    def list_secrets_data(self, namespace: str, label_selector: str) -> list[tuple[str, dict[str, str]]]:
        """(name, `.data` with base64 values) of the Secrets the selector picks. Never logged."""
        items = self.core.list_namespaced_secret(
            namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
        ).items
        return [
            (str(s.metadata.name), {str(k): str(v) for k, v in (s.data or {}).items()}) for s in items if s.metadata
        ]

    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An Argo CD Application, None when it does not exist."""
        try:
            obj = self.custom.get_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, namespace, ARGO_PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def list_deployments(self, namespace: str) -> list[dict[str, Any]]:
        items = self.apps.list_namespaced_deployment(namespace, _request_timeout=REQUEST_TIMEOUT).items
        return [self.api_client.sanitize_for_serialization(d) for d in items]

    def list_pods(self, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        items = self.core.list_namespaced_pod(
            namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
        ).items
        return [self.api_client.sanitize_for_serialization(p) for p in items]

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment as the API server has it now; None when it does not exist."""
        try:
            obj = self.apps.read_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], self.api_client.sanitize_for_serialization(obj))
