"""Argo CD cluster Secrets and destinations on plain data: the Secret's `.data` as the API server
returns it (base64 values), in the shape Argo CD writes (util/db/cluster.go clusterToSecret)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from rollback_verifier.core.destinations import (
    ClusterSecret,
    ClusterSecretError,
    DestinationNotFound,
    DestinationRef,
    destination_ref,
    effective_destination,
    parse_cluster_secret,
    resolve_destination,
    unsupported_message,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token-value"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB-ca\n-----END CERTIFICATE-----\n"
CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB-client\n-----END CERTIFICATE-----\n"
KEY_PEM = b"-----BEGIN EC PRIVATE KEY-----\nMHc-key\n-----END EC PRIVATE KEY-----\n"


def b64(value: str | bytes) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


def secret_data(name: str, server: str, config: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    """`.data` as Argo CD writes it: config is json.Marshal(ClusterConfig), []byte fields in base64."""
    data = {"name": b64(name), "server": b64(server), **{k: b64(v) for k, v in extra.items()}}
    if config is not None:
        data["config"] = b64(json.dumps(config))
    return data


def tls(**fields: Any) -> dict[str, Any]:
    return {"insecure": False, **fields}


def test_a_bearer_token_secret_with_ca_parses_as_argo_cd_reads_it() -> None:
    data = secret_data(
        "prod-eu",
        "https://10.0.0.1:6443/",
        {"bearerToken": TOKEN, "tlsClientConfig": tls(caData=b64(CA_PEM))},
        namespaces="agents,other",
    )
    secret = parse_cluster_secret("cluster-prod-eu", data)
    assert (secret.secret_name, secret.name, secret.server) == ("cluster-prod-eu", "prod-eu", "https://10.0.0.1:6443")
    assert secret.credentials.bearer_token == TOKEN
    assert secret.credentials.ca_data == CA_PEM
    assert not secret.credentials.insecure
    assert secret.unsupported == ()
    assert not secret.own_cluster


def test_a_client_certificate_and_insecure_and_server_name() -> None:
    config = {
        "tlsClientConfig": tls(insecure=True, serverName="api.internal", certData=b64(CERT_PEM), keyData=b64(KEY_PEM))
    }
    secret = parse_cluster_secret("c", secret_data("spoke", "https://127.0.0.1:7443", config))
    creds = secret.credentials
    assert (creds.cert_data, creds.key_data, creds.insecure, creds.server_name) == (
        CERT_PEM,
        KEY_PEM,
        True,
        "api.internal",
    )
    assert creds.bearer_token == ""


def test_basic_auth_is_read() -> None:
    secret = parse_cluster_secret(
        "c", secret_data("s", "https://h", {"username": "admin", "password": "pw", "tlsClientConfig": tls()})
    )
    assert (secret.credentials.username, secret.credentials.password) == ("admin", "pw")


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (
            {
                "execProviderConfig": {
                    "command": "argocd-k8s-auth",
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                }
            },
            ["execProviderConfig"],
        ),
        ({"awsAuthConfig": {"clusterName": "prod", "roleARN": "arn:aws:iam::1:role/x"}}, ["awsAuthConfig"]),
        ({"proxyUrl": "http://proxy:3128", "bearerToken": TOKEN}, ["proxyUrl"]),
        (
            {"awsAuthConfig": {"clusterName": "p"}, "execProviderConfig": {"command": "x"}},
            ["awsAuthConfig", "execProviderConfig"],
        ),
    ],
)
def test_credential_kinds_it_cannot_use_are_named(config: dict[str, Any], named: list[str]) -> None:
    secret = parse_cluster_secret("cluster-x", secret_data("x", "https://x", {**config, "tlsClientConfig": tls()}))
    assert list(secret.unsupported) == named
    message = unsupported_message(secret)
    assert all(n in message for n in named)
    assert "cluster-x" in message


def test_fields_go_leaves_empty_count_as_unset() -> None:
    config = {
        "bearerToken": TOKEN,
        "tlsClientConfig": tls(),
        "awsAuthConfig": None,
        "proxyUrl": "",
        "execProviderConfig": None,
    }
    assert parse_cluster_secret("c", secret_data("x", "https://x", config)).unsupported == ()


def test_a_secret_without_config_has_no_credentials() -> None:
    secret = parse_cluster_secret("c", secret_data("x", "https://x"))
    assert secret.credentials.bearer_token == "" and secret.unsupported == ()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"name": b64("x")}, "has no data.server"),
        ({"server": "not base64!"}, "data.server is not base64"),
        ({"server": b64("https://x"), "config": b64("{not json")}, "data.config is not JSON"),
        ({"server": b64("https://x"), "config": b64("[1]")}, "data.config is not a JSON object"),
        (
            {"server": b64("https://x"), "config": b64(json.dumps({"bearerToken": 5}))},
            "config.bearerToken is not a string",
        ),
        (
            {"server": b64("https://x"), "config": b64(json.dumps({"tlsClientConfig": {"caData": "%%"}}))},
            "config.tlsClientConfig.caData is not base64",
        ),
        (
            {"server": b64("https://x"), "config": b64(json.dumps({"tlsClientConfig": {"insecure": "yes"}}))},
            "insecure is not a boolean",
        ),
        (
            {"server": b64("https://x"), "config": b64(json.dumps({"tlsClientConfig": {"certData": b64(CERT_PEM)}}))},
            "certData and keyData go together",
        ),
    ],
)
def test_broken_secrets_say_which_field_and_never_a_value(data: dict[str, str], says: str) -> None:
    with pytest.raises(ClusterSecretError, match=says) as raised:
        parse_cluster_secret("cluster-broken", data)
    assert "cluster-broken" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_credentials_never_appear_in_repr() -> None:
    config = {
        "bearerToken": TOKEN,
        "password": "hunter2",
        "tlsClientConfig": tls(keyData=b64(KEY_PEM), certData=b64(CERT_PEM)),
    }
    secret = parse_cluster_secret("c", secret_data("x", "https://x", config))
    shown = repr(secret) + str(secret) + secret.describe() + secret.key
    for value in (TOKEN, "hunter2", "MHc-key", "MIIB-client"):
        assert value not in shown


def test_the_key_changes_with_rotated_credentials_and_differs_per_secret() -> None:
    one = parse_cluster_secret("a", secret_data("x", "https://x", {"bearerToken": "t1"}))
    rotated = parse_cluster_secret("a", secret_data("x", "https://x", {"bearerToken": "t2"}))
    other_name = parse_cluster_secret("b", secret_data("y", "https://x", {"bearerToken": "t1"}))
    assert len({one.key, rotated.key, other_name.key}) == 3
    assert one.key == parse_cluster_secret("a", secret_data("x", "https://x", {"bearerToken": "t1"})).key


# -- destinations ------------------------------------------------------------------------------------

SPOKE = ClusterSecret("cluster-spoke", "spoke", "https://127.0.0.1:7443")
OTHER = ClusterSecret("cluster-other", "other", "https://10.0.0.9")
RENAMED_LOCAL = ClusterSecret("cluster-local", "hub", "https://kubernetes.default.svc")


def test_destination_refs_from_mappings() -> None:
    assert destination_ref(None) is None
    assert destination_ref({"namespace": "agents"}) is None
    assert destination_ref({"server": "https://x/"}) == DestinationRef(server="https://x")
    assert destination_ref({"name": "spoke", "namespace": "agents"}) == DestinationRef(name="spoke")


def test_the_spec_destination_beats_the_applications_which_beats_the_own_cluster() -> None:
    app = {"spec": {"destination": {"name": "spoke", "namespace": "agents"}}}
    assert effective_destination(DestinationRef(name="other"), app) == DestinationRef(name="other")
    assert effective_destination(None, app) == DestinationRef(name="spoke")
    assert effective_destination(None, {"spec": {"destination": {"namespace": "agents"}}}) is None
    assert effective_destination(None, None) is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, None),
        (DestinationRef(server="https://kubernetes.default.svc"), None),
        (DestinationRef(server="https://kubernetes.default.svc/"), None),
        (DestinationRef(name="in-cluster"), None),
        (DestinationRef(name="hub"), None),  # a Secret for the in-cluster server, renamed: still the own cluster
        (DestinationRef(name="spoke"), SPOKE),
        (DestinationRef(server="https://127.0.0.1:7443/"), SPOKE),
    ],
)
def test_resolution(ref: DestinationRef | None, expected: ClusterSecret | None) -> None:
    assert resolve_destination(ref, [SPOKE, OTHER, RENAMED_LOCAL], "argocd") == expected


def test_a_secret_claiming_the_in_cluster_name_wins_as_in_argo_cd() -> None:
    claims = ClusterSecret("c", "in-cluster", "https://10.1.1.1")
    assert resolve_destination(DestinationRef(name="in-cluster"), [claims], "argocd") == claims


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        (DestinationRef(name="nowhere"), "no Argo CD cluster Secret .* in namespace argocd is for cluster nowhere"),
        (DestinationRef(server="https://10.9.9.9"), "is for cluster server https://10.9.9.9"),
    ],
)
def test_an_unknown_destination_says_where_it_looked(ref: DestinationRef, says: str) -> None:
    with pytest.raises(DestinationNotFound, match=says):
        resolve_destination(ref, [SPOKE], "argocd")


def test_two_secrets_for_one_server_are_ambiguous_by_server_but_not_by_name() -> None:
    twin = ClusterSecret("cluster-spoke-2", "spoke-2", SPOKE.server)
    with pytest.raises(DestinationNotFound, match=r"several .*cluster-spoke, cluster-spoke-2"):
        resolve_destination(DestinationRef(server=SPOKE.server), [SPOKE, twin], "argocd")
    assert resolve_destination(DestinationRef(name="spoke-2"), [SPOKE, twin], "argocd") == twin


def test_refs_compare_by_server_else_by_name() -> None:
    assert DestinationRef(server="https://x/").same_as(DestinationRef(server="https://x"))
    assert DestinationRef(name="a").same_as(DestinationRef(name="a"))
    assert not DestinationRef(name="a").same_as(DestinationRef(server="https://x"))
    assert not DestinationRef().same_as(DestinationRef())
