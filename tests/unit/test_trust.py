"""The trust rules (api.md "Trust boundaries") on plain data: what a RollbackVerification's author may
make the operator fetch, send and read."""

from __future__ import annotations

import base64

import pytest

from rollback_verifier.api.models import Reason, parse_spec
from rollback_verifier.api.settings import Settings
from rollback_verifier.core.destinations import DestinationRef
from rollback_verifier.core.trust import (
    DestinationPolicy,
    NamespacePolicy,
    Refused,
    RepositoryPolicy,
    check_destination,
    check_reach,
    check_repo_url,
    credentials_apply,
    destination_policy,
    namespace_policy,
    normalize_git_url,
    repository_credentials,
    repository_policy,
)
from rollback_verifier.values.expectations import ExpectationError, resolve_expectations

STRICT = RepositoryPolicy()
LOCAL = RepositoryPolicy(allow_local=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example/gitops.git",
        "https://git.example:8443/team/gitops",
        "ssh://git@git.example/team/gitops.git",
        "ssh://git@git.example:2222/team/gitops.git",
        "git@github.com:org/gitops.git",
        "github.com:org/gitops.git",
        "http://git.example/public.git",
        "https://10.0.0.5/gitops.git",  # an in-cluster git server by address
    ],
)
def test_https_ssh_and_plain_http_without_credentials_are_allowed(url: str) -> None:
    check_repo_url(url, with_credentials=False, policy=STRICT)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("fd::17", "remote helper"),
        ("ext::sh -c touch% /tmp/pwned", "remote helper"),
        ("ext::sh", "remote helper"),
        ("git://git.example/x.git", "git:// transport"),
        ("ftp://git.example/x.git", "ftp:// transport"),
        ("rsync://git.example/x.git", "rsync:// transport"),
        ("-oProxyCommand=x", "read as an option"),
        ("ssh://-oProxyCommand=touch/x", "no valid host"),
        ("-u:x", "read as an option"),
        ("https:///x.git", "no valid host"),
        ("https://git.example:port/x", "not a valid URL"),
        ("a b", "not a git repository URL"),
        ("", "not a git repository URL"),
    ],
)
def test_every_other_transport_is_refused_even_when_local_repositories_are_allowed(url: str, words: str) -> None:
    with pytest.raises(Refused) as refused:
        check_repo_url(url, with_credentials=False, policy=LOCAL)
    assert words in refused.value.message
    assert "https://, ssh:// and git@host:path" in refused.value.message or "URL" in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc",
        "FILE:///var/cache/rollback-verifier/x.git",
        "/var/cache/rollback-verifier/x.git",
        "./relative/repo",
        "repo",
        "http://127.0.0.1:8080/x.git",
        "http://127.1/x.git",  # legacy IPv4 forms that curl reads as 127.0.0.1
        "http://2130706433/x.git",
        "http://0x7f.0.0.1/x.git",
        "https://localhost/x.git",
        "https://api.localhost/x.git",
        "http://[::1]:9000/x.git",
        "http://[::ffff:127.0.0.1]/x.git",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://0.0.0.0:6443/x",
        "https://kubernetes.default.svc/api",
        "git@localhost:x.git",
        "ssh://git@127.0.0.2/x.git",
    ],
)
def test_local_repositories_and_services_only_where_the_settings_allow(url: str) -> None:
    with pytest.raises(Refused) as refused:
        check_repo_url(url, with_credentials=False, policy=STRICT)
    assert "trust.allowLocalRepositories: true" in refused.value.message
    check_repo_url(url, with_credentials=False, policy=LOCAL)


def test_the_api_server_address_the_operator_uses_is_a_local_service() -> None:
    policy = RepositoryPolicy(local_hosts=frozenset({"10.96.0.1"}))
    with pytest.raises(Refused, match="local to the operator"):
        check_repo_url("https://10.96.0.1/x.git", with_credentials=False, policy=policy)
    check_repo_url("https://10.96.0.2/x.git", with_credentials=False, policy=policy)


@pytest.mark.parametrize("url", ["http://git.example/x.git", "http://user:pw@git.example/x.git"])
def test_credentials_never_go_over_plain_http(url: str) -> None:
    with pytest.raises(Refused, match="never sent over plain http"):
        check_repo_url(url, with_credentials="user:" not in url, policy=LOCAL)


def test_a_refusal_never_shows_a_password_written_into_the_url() -> None:
    with pytest.raises(Refused) as refused:
        check_repo_url("http://user:hunter2@git.example/x.git", with_credentials=False, policy=STRICT)
    assert "hunter2" not in refused.value.message


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("https://github.com/Org/Repo.git", "https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "ssh://git@github.com/org/repo"),
        ("  https://git.example/x.git ", "https://git.example/x"),
    ],
)
def test_urls_are_normalised_as_argo_cd_does(left: str, right: str) -> None:
    assert normalize_git_url(left) == normalize_git_url(right)


@pytest.mark.parametrize(
    ("secret_url", "repo_url", "template", "applies"),
    [
        ("https://git.example/gitops.git", "https://git.example/gitops", False, True),
        ("https://git.example/gitops.git", "https://GIT.example/gitops.git", False, True),
        ("https://git.example/gitops.git", "https://someone@git.example/gitops.git", False, True),
        ("git@git.example:team/gitops.git", "ssh://git@git.example/team/gitops", False, True),
        ("https://git.example/gitops.git", "http://127.0.0.1:9999/x.git", False, False),
        ("https://git.example/gitops.git", "https://git.example/gitops-evil.git", False, False),
        ("https://git.example/gitops.git", "https://git.example.evil/gitops.git", False, False),
        ("https://git.example/gitops.git", "https://git.example/gitops.git/x", False, False),
        ("https://git.example/team", "https://git.example/team/app.git", True, True),
        ("https://git.example/team/", "https://git.example/team/app.git", True, True),
        ("https://git.example/team", "https://git.example/team-b/app.git", True, False),
        ("https://git.example/team", "https://git.example/team/app.git", False, False),
        ("https://git.example/team", "https://evil.example/team/app.git", True, False),
        ("", "https://git.example/x.git", True, False),
    ],
)
def test_credentials_apply_only_to_the_url_their_secret_names(
    secret_url: str, repo_url: str, template: bool, applies: bool
) -> None:
    assert credentials_apply(secret_url, repo_url, template=template) is applies


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def test_a_repository_secret_gives_its_credentials_for_its_own_url() -> None:
    data = {"url": b64("https://git.example/gitops.git"), "username": b64("bot"), "password": b64("s3cret")}
    credentials = repository_credentials("repo", data, {}, "https://git.example/gitops")
    assert (credentials.username, credentials.password) == ("bot", "s3cret")


@pytest.mark.parametrize(
    ("data", "labels", "repo_url", "words"),
    [
        (
            {"url": b64("https://git.example/gitops.git"), "password": b64("s3cret")},
            {},
            "http://127.0.0.1:9999/x.git",
            "not repoURL 'http://127.0.0.1:9999/x.git'",
        ),
        ({"password": b64("s3cret")}, {}, "https://git.example/x.git", "has no url"),
        ({"url": b64("https://git.example/x.git")}, {}, "https://git.example/x.git", "is unusable"),
        (
            {"url": b64("https://git.example/x.git"), "githubAppPrivateKey": b64("k")},
            {},
            "https://git.example/x.git",
            "GitHub App",
        ),
        (
            {"url": b64("https://git.example/team"), "password": b64("s3cret")},
            {"argocd.argoproj.io/secret-type": "repo-creds"},
            "https://git.example/other/x.git",
            "the repositories under the URL",
        ),
    ],
)
def test_a_secret_for_another_url_or_without_usable_keys_is_refused(
    data: dict[str, str], labels: dict[str, str], repo_url: str, words: str
) -> None:
    with pytest.raises(Refused) as refused:
        repository_credentials("repo", data, labels, repo_url)
    assert words in refused.value.message
    # The author may not read the Secret: neither its values nor its url show.
    assert "s3cret" not in refused.value.message and "git.example/team" not in refused.value.message


def test_a_credential_template_covers_the_repositories_under_its_url() -> None:
    data = {"url": b64("https://git.example/team"), "password": b64("s3cret")}
    labels = {"argocd.argoproj.io/secret-type": "repo-creds"}
    assert repository_credentials("creds", data, labels, "https://git.example/team/app.git").password == "s3cret"


def resolve_git(repo_url: str, secret: tuple[dict, dict] | None, policy: RepositoryPolicy = STRICT) -> None:
    git: dict = {"repoURL": repo_url, "path": "values.yaml"}
    if secret is not None:
        git["credentialsSecretRef"] = {"name": "repo"}
    spec = parse_spec({"revision": "main", "valuesFrom": {"git": git}})
    read_secret = None if secret is None else (lambda name: secret)
    resolve_expectations(
        spec,
        spec.effective_targets("agents"),
        application=None,
        reader=None,
        read_secret=read_secret,
        repositories=policy,
    )


def test_a_refused_repository_ends_the_verification_with_invalid_spec_before_any_secret_is_read() -> None:
    def no_read(name: str) -> tuple[dict, dict]:
        raise AssertionError("the Secret was read for a refused URL")

    spec = parse_spec(
        {"valuesFrom": {"git": {"repoURL": "file:///etc", "path": "passwd", "credentialsSecretRef": {"name": "s"}}}}
    )
    with pytest.raises(ExpectationError) as failed:
        resolve_expectations(spec, spec.effective_targets("a"), application=None, reader=None, read_secret=no_read)
    assert failed.value.reason == Reason.INVALID_SPEC
    assert failed.value.message.startswith("valuesFrom.git: repoURL 'file:///etc' is a repository on the operator's")


def test_a_secret_for_another_repository_ends_the_verification_with_invalid_spec() -> None:
    secret = ({"url": b64("https://git.example/gitops.git"), "password": b64("s3cret")}, {})
    with pytest.raises(ExpectationError) as failed:
        resolve_git("https://evil.example/gitops.git", secret)
    assert failed.value.reason == Reason.INVALID_SPEC and "credentials Secret repo" in failed.value.message


def test_the_application_repo_url_is_checked_too() -> None:
    spec = parse_spec({"application": {"name": "agents"}, "valuesFrom": {"git": {"path": "values.yaml"}}})
    app = {"spec": {"source": {"repoURL": "ext::sh -c id"}}, "status": {"history": [{"id": 1, "revision": "r"}]}}
    with pytest.raises(ExpectationError) as failed:
        resolve_expectations(spec, spec.effective_targets("a"), application=app, reader=None, read_secret=None)
    assert failed.value.reason == Reason.INVALID_SPEC


# --- namespaces -----------------------------------------------------------------------------------

POLICY = NamespacePolicy(
    target_namespaces={"agents": frozenset({"agents-canary"})},
    applications={"agents": frozenset({("argocd", "agents")})},
)


def app_deploying_to(namespace: str | None) -> dict:
    return {"spec": {"destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}}}


def test_targets_in_the_own_or_a_mapped_namespace_are_allowed() -> None:
    check_reach("agents", ["agents", "agents-canary"], None, None, POLICY)
    check_reach("team-a", ["team-a"], None, None, POLICY)


def test_a_target_in_another_namespace_is_refused_with_the_setting_that_would_allow_it() -> None:
    with pytest.raises(Refused) as refused:
        check_reach("team-a", ["team-a", "team-b"], None, None, POLICY)
    assert refused.value.message == (
        "target namespace team-b: a RollbackVerification in team-a may target only its own namespace, "
        "unless the operator settings map team-a to team-b (trust.targetNamespaces.team-a: [team-b])"
    )


@pytest.mark.parametrize(
    ("namespace", "app", "obj"),
    [
        ("team-a", ("argocd", "team-a-app"), app_deploying_to("team-a")),
        ("agents", ("argocd", "canary"), app_deploying_to("agents-canary")),
        ("agents", ("argocd", "agents"), app_deploying_to("elsewhere")),  # detection's own Application
        ("agents", ("argocd", "agents"), None),
    ],
)
def test_applications_that_deploy_to_a_reachable_namespace_are_allowed(
    namespace: str, app: tuple[str, str], obj: dict | None
) -> None:
    check_reach(namespace, [namespace], app, obj, POLICY)


def test_a_missing_application_is_left_to_the_verdict() -> None:
    check_reach("team-a", ["team-a"], ("argocd", "nope"), None, POLICY)  # the verdict says "not found"


@pytest.mark.parametrize("obj", [app_deploying_to("team-b"), app_deploying_to(None), {"spec": {}}], ids=str)
def test_an_application_deploying_elsewhere_is_refused_without_saying_where(obj: dict) -> None:
    with pytest.raises(Refused) as refused:
        check_reach("team-a", ["team-a"], ("argocd", "team-b-app"), obj, POLICY)
    assert "trust.targetNamespaces.team-a" in refused.value.message
    assert "team-b" not in refused.value.message.replace("team-b-app", "")  # its destination stays unsaid


def test_the_settings_map_detections_namespaces_for_the_verifications_it_creates() -> None:
    settings = Settings.model_validate(
        {
            "detection": {
                "applications": [
                    {
                        "name": "agents",
                        "verificationNamespace": "agents",
                        "targets": [
                            {"name": "agents", "imageValues": ["controlPlane.image"]},
                            {"name": "workers", "namespace": "agents-workers", "imageValues": ["image"]},
                        ],
                    }
                ]
            },
            "trust": {"targetNamespaces": {"team-a": ["team-a-canary"]}},
        }
    )
    policy = namespace_policy(settings)
    assert policy.reachable("agents") == {"agents", "agents-workers"}
    assert policy.reachable("team-a") == {"team-a", "team-a-canary"}
    assert policy.applications == {"agents": {("argocd", "agents")}}
    assert repository_policy(settings) == RepositoryPolicy(allow_local=False)


def test_the_defaults_are_the_strictest() -> None:
    settings = Settings()
    assert settings.trust.allowLocalRepositories is False and settings.trust.targetNamespaces == {}


def test_a_metrics_address_that_is_not_an_ip_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from rollback_verifier.cli.main import EXIT_USAGE, main

    assert main(["run", "--namespace", "x", "--metrics-address", "everywhere"]) == EXIT_USAGE
    assert "--metrics-address 'everywhere' is not an IP address" in capsys.readouterr().err


# --- Destination clusters (spec.destination) ------------------------------------------------------


SPOKE = DestinationRef(name="spoke")
ENABLED = DestinationPolicy(enabled=True)


def test_no_destination_named_looks_where_the_application_deploys() -> None:
    check_destination("agents", None, SPOKE, SPOKE, ENABLED)
    check_destination("agents", None, None, None, DestinationPolicy())  # the own cluster, even when disabled


def test_naming_the_applications_own_destination_or_the_own_cluster_is_no_gain() -> None:
    check_destination("agents", DestinationRef(name="spoke"), SPOKE, SPOKE, ENABLED)
    own = DestinationRef(server="https://kubernetes.default.svc")
    check_destination("agents", own, SPOKE, own, DestinationPolicy())


def test_another_cluster_is_refused_unless_the_settings_list_it_for_the_namespace() -> None:
    other = DestinationRef(name="prod-eu")
    with pytest.raises(Refused, match=r"trust.destinationClusters.agents: \[prod-eu\]"):
        check_destination("agents", other, SPOKE, other, ENABLED)
    with pytest.raises(Refused, match="may name only its Application's destination"):
        check_destination("agents", other, None, other, ENABLED)  # no Application: no destination of its own
    listed = DestinationPolicy(enabled=True, clusters={"agents": frozenset({"prod-eu"})})
    check_destination("agents", other, None, other, listed)
    with pytest.raises(Refused):
        check_destination("team-b", other, None, other, listed)  # listed for agents only


def test_the_in_cluster_name_is_not_the_own_cluster_for_trust() -> None:
    # A cluster Secret may claim the name in-cluster for a remote cluster: only the server URL is always own.
    named = DestinationRef(name="in-cluster")
    with pytest.raises(Refused):
        check_destination("agents", named, SPOKE, named, ENABLED)


def test_destination_clusters_need_the_setting_enabled() -> None:
    with pytest.raises(Refused, match=r"destinations.enabled: true; chart value destinations.enabled"):
        check_destination("agents", None, SPOKE, SPOKE, DestinationPolicy())


def test_destination_policy_from_settings() -> None:
    settings = Settings.model_validate(
        {"destinations": {"enabled": True}, "trust": {"destinationClusters": {"agents": ["prod-eu"]}}}
    )
    assert destination_policy(settings) == DestinationPolicy(True, {"agents": frozenset({"prod-eu"})})
    assert destination_policy(Settings()) == DestinationPolicy()
