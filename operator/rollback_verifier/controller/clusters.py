"""The clusters verifications look in: the operator's own, and Argo CD's destination clusters.

A destination cluster is reached with the credentials of its Argo CD cluster Secret (parsed by
core/destinations.py). Its connection and its target caches (per target Deployment, as in the own
cluster, their changes coalesced onto the event loop the same way) are opened by the first
verification there and closed with the last; each cluster's watches run in threads of their own,
so one unreachable cluster delays no verification elsewhere. Credentials stay in memory, except the
PEM files the client library can only read from disk: those are written 0600 into a private folder
under the cache directory and removed when the connection closes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import urllib3
from kubernetes import client

from rollback_verifier.controller.kube import Kube
from rollback_verifier.controller.target_caches import Schedule, TargetCaches
from rollback_verifier.core.destinations import (
    CLUSTER_SECRET_SELECTOR,
    ClusterSecret,
    ClusterSecretError,
    DestinationNotFound,
    DestinationRef,
    parse_cluster_secret,
    resolve_destination,
)

log = logging.getLogger(__name__)

OWN = ""  # the key of the operator's own cluster

# (cluster key, namespace, Deployment name): a target of that cluster changed; called through `schedule`.
ClusterChanged = Callable[[str, str, str | None], None]


@dataclass
class Cluster:
    """One cluster as verifications use it: its client and its target caches."""

    key: str  # OWN, or the cluster Secret's identity (ClusterSecret.key)
    label: str  # for messages: "cluster spoke (https://...)"
    kube: Kube
    caches: TargetCaches
    secret_name: str = ""
    users: int = 0
    _files: Path | None = None

    @property
    def remote(self) -> bool:
        return self.key != OWN

    def unreachable(self) -> str | None:
        """Why a destination cluster cannot be read, and since when; None when its caches work."""
        failing = self.caches.failing()
        if not self.remote or failing is None:
            return None
        since, error = failing
        when = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        hint = ""
        if "HTTP 401" in error:
            hint = f" (the cluster refused the credentials of Argo CD's cluster Secret {self.secret_name})"
        elif "HTTP 403" in error:
            hint = f" (the credentials of Argo CD's cluster Secret {self.secret_name} may not read there)"
        return f"{self.label} unreachable since {when}: {error}{hint}"


def api_client_for(secret: ClusterSecret, files_root: Path) -> tuple[client.ApiClient, Path | None]:
    """A client for the cluster a Secret names, and the private folder of its PEM files (if any)."""
    creds = secret.credentials
    cfg = client.Configuration()
    cfg.host = secret.server
    if creds.bearer_token:
        cfg.api_key = {"authorization": f"Bearer {creds.bearer_token}"}
    elif creds.username:
        cfg.username, cfg.password = creds.username, creds.password
    cfg.verify_ssl = not creds.insecure
    if creds.insecure:
        # The Secret asks for it (Argo CD's "insecure"): one warning in the log, not one per request.
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        log.warning("%s: TLS certificate not verified (its cluster Secret sets insecure)", secret.describe())
    if creds.server_name:
        cfg.tls_server_name = creds.server_name
    folder: Path | None = None
    pems = {"ca.crt": creds.ca_data, "client.crt": creds.cert_data, "client.key": creds.key_data}
    if any(pems.values()):
        files_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = Path(tempfile.mkdtemp(prefix="cluster-", dir=files_root))  # mode 0700
        for name, data in pems.items():
            if data:
                path = folder / name
                path.touch(mode=0o600)
                path.write_bytes(data)
        cfg.ssl_ca_cert = str(folder / "ca.crt") if creds.ca_data else None
        if creds.cert_data:
            cfg.cert_file, cfg.key_file = str(folder / "client.crt"), str(folder / "client.key")
    cfg.connection_pool_maxsize = 4
    return client.ApiClient(cfg), folder


class Clusters:
    """Finds a verification's cluster and shares its connection and caches among its verifications."""

    def __init__(
        self,
        own_kube: Kube,
        own_caches: TargetCaches,
        changed: ClusterChanged,
        *,
        argocd_namespace: str,
        files_root: Path,
        schedule: Schedule | None = None,
    ) -> None:
        self.own_kube = own_kube
        self._schedule = schedule  # the own caches' hand-over to the event loop, shared by every cluster's
        self.argocd_namespace = argocd_namespace
        self.files_root = files_root
        self.changed = changed
        self._own = Cluster(OWN, "the operator's own cluster", own_kube, own_caches)
        self._remote: dict[str, Cluster] = {}
        self._lock = threading.Lock()

    def own(self) -> Cluster:
        return self._own

    def lookup(self, ref: DestinationRef | None) -> ClusterSecret | None:
        """The cluster Secret of a destination (None: the own cluster), read now from Argo CD's
        namespace (blocking: call it in an API thread). Raises DestinationNotFound."""
        if ref is None or (ref.own_cluster and ref.server):
            return None
        secrets, broken = [], []
        for name, data in self.own_kube.list_secrets_data(self.argocd_namespace, CLUSTER_SECRET_SELECTOR):
            try:
                secrets.append(parse_cluster_secret(name, data))
            except ClusterSecretError as exc:
                broken.append(str(exc))
        try:
            return resolve_destination(ref, secrets, self.argocd_namespace)
        except DestinationNotFound as exc:
            if broken:
                raise DestinationNotFound(f"{exc}; unreadable: {'; '.join(broken)}") from None
            raise

    def acquire(self, secret: ClusterSecret | None) -> Cluster:
        """The cluster, connected; every acquire is matched by one release."""
        if secret is None:
            return self._own
        with self._lock:
            cluster = self._remote.get(secret.key)
            if cluster is None:
                cluster = self._connect(secret)
                self._remote[secret.key] = cluster
            cluster.users += 1
            return cluster

    def release(self, cluster: Cluster) -> None:
        if not cluster.remote:
            return
        with self._lock:
            cluster.users -= 1
            if cluster.users > 0 or self._remote.get(cluster.key) is not cluster:
                return
            del self._remote[cluster.key]
        log.info("%s: no verification there any more; connection closed", cluster.label)
        cluster.kube.api_client.close()  # type: ignore[no-untyped-call]
        if cluster._files is not None:
            shutil.rmtree(cluster._files, ignore_errors=True)

    def _connect(self, secret: ClusterSecret) -> Cluster:
        api_client, files = api_client_for(secret, self.files_root)
        key = secret.key
        label = secret.describe()
        caches = TargetCaches(
            Kube(api_client),
            lambda ns, deployment: self.changed(key, ns, deployment),
            where=f" of {label}",
            schedule=self._schedule,
        )
        log.info("%s: connecting for the verifications there", label)
        return Cluster(key, label, caches.kube, caches, secret_name=secret.secret_name, _files=files)

    @property
    def watches(self) -> int:
        """Watches open now in destination clusters (the own cluster's are counted by its caches)."""
        with self._lock:
            return sum(c.caches.watches for c in self._remote.values())

    @property
    def connected(self) -> int:
        with self._lock:
            return len(self._remote)
