"""The thin layer over the Kubernetes API that the operator and the CLI share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollback_verifier import GROUP, PLURAL, VERSION

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "applications"
# Client-side timeout of every plain request: a hung API server must not hang a verification.
REQUEST_TIMEOUT = (5, 30)


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): re-read it and decide again."""


def load_client_config() -> client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 16  # verifications write status concurrently
    return client.ApiClient(cfg)


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

    def list_verifications(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
        )
        return list(cast(dict[str, Any], result).get("items") or [])

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
    def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's `.data` as the API returns it (base64 values). Never logged, never in messages."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            raise LookupError(f"cannot read Secret {namespace}/{name} (HTTP {exc.status})") from None
        return {str(k): str(v) for k, v in (secret.data or {}).items()}

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
