"""Argo CD's destination clusters, as plain data: its cluster Secrets parsed, a destination resolved.

Argo CD registers a cluster as a Secret labelled `argocd.argoproj.io/secret-type: cluster` in its own
namespace, with `name`, `server` and `config` (JSON: Argo CD's ClusterConfig) in `.data`. An
Application deploys to `spec.destination.server` or `.name`; `https://kubernetes.default.svc` (by
default named `in-cluster`) is the cluster Argo CD itself runs in, which here is the operator's own.

Pure functions of plain data: no client, no I/O. Credentials live only in fields that are left out of
every repr, so that a Secret's contents never reach a log line or a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 (a label, not a secret)
CLUSTER_SECRET_TYPE = "cluster"  # noqa: S105
CLUSTER_SECRET_SELECTOR = f"{SECRET_TYPE_LABEL}={CLUSTER_SECRET_TYPE}"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
IN_CLUSTER_NAME = "in-cluster"

# ClusterConfig fields whose credentials this operator can use, and those it cannot (it runs no
# plugins: no argocd-k8s-auth for AWS, no exec provider, no proxy).
_SUPPORTED_CONFIG = {"bearerToken", "username", "password", "tlsClientConfig", "disableCompression"}
_SUPPORTED_TLS = {"insecure", "serverName", "certData", "keyData", "caData"}


class ClusterSecretError(ValueError):
    """A cluster Secret this operator cannot use; the message names the Secret, never its contents."""


@dataclass(frozen=True)
class Credentials:
    """How to reach one cluster. Every secret field is kept out of repr (and so out of logs)."""

    bearer_token: str = field(default="", repr=False)
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    cert_data: bytes = field(default=b"", repr=False)  # PEM: the client certificate
    key_data: bytes = field(default=b"", repr=False)  # PEM: its private key
    ca_data: bytes = field(default=b"", repr=False)  # PEM: the CAs to trust for the server
    insecure: bool = False
    server_name: str = ""

    def fingerprint(self) -> str:
        """A digest that changes when any credential changes (a rotated token): never the credentials."""
        digest = hashlib.sha256()
        for part in (self.bearer_token, self.username, self.password, self.server_name, str(self.insecure)):
            digest.update(part.encode() + b"\0")
        for data in (self.cert_data, self.key_data, self.ca_data):
            digest.update(data + b"\0")
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ClusterSecret:
    """One Argo CD cluster Secret, parsed. `unsupported`: the credential kinds it uses that this
    operator cannot (a verification there ends saying so)."""

    secret_name: str  # the Secret's metadata.name
    name: str  # the cluster's name in Argo CD (data.name)
    server: str  # data.server, without trailing slashes (Argo CD's rule)
    credentials: Credentials = field(default_factory=Credentials)
    unsupported: tuple[str, ...] = ()

    @property
    def own_cluster(self) -> bool:
        return self.server == IN_CLUSTER_SERVER

    @property
    def key(self) -> str:
        """Identity of one connection: the Secret, its server and its credentials (a rotated token or a
        moved server is another connection; two Secrets for the same server are two, as in Argo CD)."""
        return f"{self.secret_name}|{self.server}|{self.credentials.fingerprint()}"

    def describe(self) -> str:
        return f"cluster {self.name or self.secret_name} ({self.server})"


def _decode(data: Mapping[str, str], key: str, secret_name: str) -> bytes:
    value = data.get(key)
    if value is None:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClusterSecretError(f"cluster Secret {secret_name}: data.{key} is not base64") from None


def _text(raw: bytes, key: str, secret_name: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ClusterSecretError(f"cluster Secret {secret_name}: data.{key} is not UTF-8 text") from None


def _pem(tls: Mapping[str, Any], key: str, secret_name: str) -> bytes:
    """A []byte field of Argo CD's TLSClientConfig: base64 in the JSON (Go's encoding of []byte)."""
    value = tls.get(key)
    if value in (None, ""):
        return b""
    if not isinstance(value, str):
        raise ClusterSecretError(f"cluster Secret {secret_name}: config.tlsClientConfig.{key} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ClusterSecretError(f"cluster Secret {secret_name}: config.tlsClientConfig.{key} is not base64") from None


def _string(config: Mapping[str, Any], key: str, where: str, secret_name: str) -> str:
    value = config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ClusterSecretError(f"cluster Secret {secret_name}: {where}{key} is not a string")
    return value


def parse_cluster_secret(secret_name: str, data: Mapping[str, str]) -> ClusterSecret:
    """A cluster Secret's `.data` (base64 values, as the API returns them), parsed as Argo CD does
    (util/db/cluster.go SecretToCluster, ClusterConfig in pkg/apis/application/v1alpha1).
    Raises ClusterSecretError for a Secret Argo CD could not read either; the message names the
    field, never a value."""
    server = _text(_decode(data, "server", secret_name), "server", secret_name).strip().rstrip("/")
    if not server:
        raise ClusterSecretError(f"cluster Secret {secret_name} has no data.server")
    name = _text(_decode(data, "name", secret_name), "name", secret_name).strip()
    raw_config = _decode(data, "config", secret_name)
    config: Any = {}
    if raw_config:
        try:
            config = json.loads(raw_config)
        except (ValueError, UnicodeDecodeError):
            raise ClusterSecretError(f"cluster Secret {secret_name}: data.config is not JSON") from None
    if not isinstance(config, dict):
        raise ClusterSecretError(f"cluster Secret {secret_name}: data.config is not a JSON object")
    tls = config.get("tlsClientConfig") or {}
    if not isinstance(tls, dict):
        raise ClusterSecretError(f"cluster Secret {secret_name}: config.tlsClientConfig is not an object")
    # Empty values (Go's omitempty leaves some as null or "") use nothing: only set fields count.
    unsupported = sorted(k for k, v in config.items() if k not in _SUPPORTED_CONFIG and v not in (None, "", {}, False))
    unsupported += sorted(f"tlsClientConfig.{k}" for k, v in tls.items() if k not in _SUPPORTED_TLS and v)
    insecure = tls.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ClusterSecretError(f"cluster Secret {secret_name}: config.tlsClientConfig.insecure is not a boolean")
    credentials = Credentials(
        bearer_token=_string(config, "bearerToken", "config.", secret_name),
        username=_string(config, "username", "config.", secret_name),
        password=_string(config, "password", "config.", secret_name),
        cert_data=_pem(tls, "certData", secret_name),
        key_data=_pem(tls, "keyData", secret_name),
        ca_data=_pem(tls, "caData", secret_name),
        insecure=insecure,
        server_name=_string(tls, "serverName", "config.tlsClientConfig.", secret_name),
    )
    if bool(credentials.cert_data) != bool(credentials.key_data):
        raise ClusterSecretError(
            f"cluster Secret {secret_name}: config.tlsClientConfig has a client certificate without its key "
            "(certData and keyData go together)"
        )
    return ClusterSecret(secret_name, name, server, credentials, tuple(unsupported))


# -- which cluster a verification's targets live in -------------------------------------------------


@dataclass(frozen=True)
class DestinationRef:
    """A destination as named: by Argo CD cluster name or by server URL (one of the two)."""

    name: str = ""
    server: str = ""

    def describe(self) -> str:
        return f"cluster {self.name}" if self.name else f"cluster server {self.server}"

    @property
    def own_cluster(self) -> bool:
        """Named as the cluster Argo CD runs in (by its default name only when no Secret renames it)."""
        return self.server.rstrip("/") == IN_CLUSTER_SERVER or (not self.server and self.name == IN_CLUSTER_NAME)

    def same_as(self, other: DestinationRef) -> bool:
        if self.server and other.server:
            return self.server.rstrip("/") == other.server.rstrip("/")
        return bool(self.name) and self.name == other.name


def destination_ref(value: Mapping[str, Any] | None) -> DestinationRef | None:
    """A {name, server} mapping (spec.destination, an Application's spec.destination) as a ref; None
    when it names no cluster."""
    if not value:
        return None
    name, server = str(value.get("name") or "").strip(), str(value.get("server") or "").strip().rstrip("/")
    if not name and not server:
        return None
    return DestinationRef(name=name, server=server)


def effective_destination(
    requested: DestinationRef | None, application: Mapping[str, Any] | None
) -> DestinationRef | None:
    """The destination a verification's targets live in: its own spec.destination, else its
    Application's, else None (the operator's own cluster)."""
    if requested is not None:
        return requested
    return destination_ref(((application or {}).get("spec") or {}).get("destination"))


class DestinationNotFound(LookupError):
    """No (or no single) cluster Secret matches the destination; the message says which."""


def resolve_destination(
    ref: DestinationRef | None, secrets: Iterable[ClusterSecret], argocd_namespace: str
) -> ClusterSecret | None:
    """The cluster Secret the destination names, or None for the operator's own cluster. Argo CD's
    rules: by server (trailing slashes ignored) or by name; `https://kubernetes.default.svc` is the
    cluster Argo CD runs in, and so is the name `in-cluster` unless a Secret claims that name.
    Raises DestinationNotFound."""
    if ref is None:
        return None
    found = list(secrets)
    if ref.server:
        if ref.server.rstrip("/") == IN_CLUSTER_SERVER:
            return None
        matches = [s for s in found if s.server == ref.server.rstrip("/")]
    else:
        matches = [s for s in found if s.name == ref.name]
        if not matches and ref.name == IN_CLUSTER_NAME:
            return None
    if not matches:
        raise DestinationNotFound(
            f"no Argo CD cluster Secret ({CLUSTER_SECRET_SELECTOR}) in namespace {argocd_namespace} "
            f"is for {ref.describe()}"
        )
    if len(matches) > 1:
        names = ", ".join(sorted(s.secret_name for s in matches))
        raise DestinationNotFound(
            f"several Argo CD cluster Secrets in {argocd_namespace} are for {ref.describe()}: {names}"
        )
    match = matches[0]
    return None if match.own_cluster else match


def unsupported_message(secret: ClusterSecret) -> str:
    return (
        f"{secret.describe()}: its Argo CD cluster Secret {secret.secret_name} uses credentials this operator "
        f"does not support ({', '.join(secret.unsupported)}); supported: a bearer token, basic auth, a TLS "
        "client certificate, caData and insecure"
    )
