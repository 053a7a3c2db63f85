"""The destination-cluster registry without a cluster: clients are built and shared, PEM files are
private and removed with the last user. Nothing here connects (informers start only when a
verification acquires a namespace's caches, which these tests never do)."""

from __future__ import annotations

import stat
from pathlib import Path

from kubernetes import client

from rollback_verifier.controller.clusters import OWN, Clusters, api_client_for
from rollback_verifier.controller.kube import Kube
from rollback_verifier.controller.target_caches import TargetCaches
from rollback_verifier.core.destinations import ClusterSecret, Credentials

CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nkey\n-----END EC PRIVATE KEY-----\n"


def secret(secret_name: str = "cluster-spoke", token: str = "t0ken", **creds: object) -> ClusterSecret:  # noqa: S107
    return ClusterSecret(
        secret_name,
        secret_name.removeprefix("cluster-"),
        "https://10.0.0.1:6443",
        Credentials(bearer_token=token, **creds),
    )  # type: ignore[arg-type]


def registry(tmp_path: Path) -> Clusters:
    own = Kube(client.ApiClient(client.Configuration()))
    return Clusters(
        own,
        TargetCaches(own, lambda ns, d: None),
        lambda key, ns, d: None,
        argocd_namespace="argocd",
        files_root=tmp_path / "clusters",
    )


def test_a_bearer_token_client_without_files(tmp_path: Path) -> None:
    api, folder = api_client_for(secret(), tmp_path)
    cfg = api.configuration
    assert (cfg.host, cfg.api_key, cfg.verify_ssl) == ("https://10.0.0.1:6443", {"authorization": "Bearer t0ken"}, True)
    assert folder is None and not tmp_path.joinpath("x").exists()


def test_pem_files_are_private(tmp_path: Path) -> None:
    api, folder = api_client_for(secret(ca_data=CA, cert_data=CERT, key_data=KEY, server_name="api.internal"), tmp_path)
    assert folder is not None
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name, data in (("ca.crt", CA), ("client.crt", CERT), ("client.key", KEY)):
        assert (folder / name).read_bytes() == data
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    cfg = api.configuration
    assert (cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file) == (
        str(folder / "ca.crt"),
        str(folder / "client.crt"),
        str(folder / "client.key"),
    )
    assert cfg.tls_server_name == "api.internal"


def test_insecure_turns_verification_off(tmp_path: Path) -> None:
    api, _ = api_client_for(secret(insecure=True), tmp_path)
    assert api.configuration.verify_ssl is False


def test_one_connection_per_cluster_secret_shared_and_closed_with_the_last(tmp_path: Path) -> None:
    clusters = registry(tmp_path)
    assert clusters.acquire(None) is clusters.own() and clusters.own().key == OWN
    first = clusters.acquire(secret(ca_data=CA))
    again = clusters.acquire(secret(ca_data=CA))
    other = clusters.acquire(secret("cluster-spoke-2", ca_data=CA))  # the same server under another name
    rotated = clusters.acquire(secret(token="rotated", ca_data=CA))  # a new token: a new connection
    assert first is again and first.users == 2
    assert len({id(first), id(other), id(rotated)}) == 3 and clusters.connected == 3
    assert first.remote and "cluster spoke (https://10.0.0.1:6443)" in first.label
    assert first._files is not None
    files = first._files
    clusters.release(first)
    assert files.exists() and clusters.connected == 3
    clusters.release(again)
    assert not files.exists() and clusters.connected == 2
    assert clusters.acquire(secret(ca_data=CA)) is not first  # reconnects afresh


def test_nothing_unreachable_while_no_cache_fails(tmp_path: Path) -> None:
    clusters = registry(tmp_path)
    assert clusters.acquire(secret()).unreachable() is None
    assert clusters.own().unreachable() is None
