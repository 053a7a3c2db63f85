"""Trust boundaries (api.md, README "Security model") on the real cluster: each attack of issue 11, tried
by someone who may only create RollbackVerifications, against the operator running with exactly the
namespaced chart's RBAC and the settings the chart renders."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from harness.agents import VALUES_PATH, GitOpsRepo, images, release_images, verification, wait_verdict
from harness.argocd import ArgoCD
from harness.support import Cluster, Operator, running_operator

from tests.e2e.test_chart_install import CHART, RELEASE, SERVICE_ACCOUNT, service_account_kubeconfig

SECRET = "repo-creds"
SECRET_URL = "https://git.example/gitops.git"
USERNAME = "trust-bot"


@dataclass
class Recorder:
    """A loopback HTTP server that answers every request with a Basic-auth challenge (the bait for
    credentials) and records what it received."""

    server: ThreadingHTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/gitops.git"

    @classmethod
    def start(cls) -> Recorder:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # git's smart-HTTP discovery is a GET
                received.append({"path": self.path, "headers": dict(self.headers.items())})
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="gitops"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return cls(server, received)

    def credentials_seen(self) -> list[str]:
        """Every Authorization header, decoded where it is Basic."""
        seen = []
        for request in self.requests:
            for name, value in request["headers"].items():
                if name.lower() == "authorization":
                    scheme, _, token = value.partition(" ")
                    seen.append(base64.b64decode(token).decode() if scheme.lower() == "basic" else value)
        return seen


@dataclass
class Scene:
    cluster: Cluster
    as_operator: Cluster  # the chart's ServiceAccount
    own: str  # the attacker's namespace
    other: str  # team B's namespace
    argocd: ArgoCD  # real Argo CD (the session's)
    password: str
    recorder: Recorder
    tmp: Path
    values: dict[str, Any]  # the chart values every install shares

    def operator(self, extra: list[str] | None = None, secret_names: tuple[str, ...] = (SECRET,), **trust: Any) -> Any:
        """The operator with the chart's settings for these trust values (helm upgrade renders them)."""
        values = self.tmp / f"trust-{uuid.uuid4().hex[:6]}.yaml"
        values.write_text(
            yaml.safe_dump({**self.values, "trust": trust, "gitCredentials": {"secretNames": list(secret_names)}})
        )
        self.cluster.helm("upgrade", RELEASE, str(CHART), "-n", self.own, "-f", str(values))
        configmap = self.cluster.get("-n", self.own, "configmap", f"{SERVICE_ACCOUNT}-settings")
        settings = self.tmp / f"settings-{values.stem}.yaml"
        settings.write_text(configmap["data"]["settings.yaml"])
        return running_operator(
            self.as_operator,
            [self.own, self.other],
            self.tmp / values.stem,
            settings=settings,
            extra=extra,
            allow_local_repositories=False,  # the chart's own settings decide
        )

    def verify(self, name: str, spec: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        self.cluster.apply(verification(name, spec), self.own)
        status: dict[str, Any] = wait_verdict(self.cluster, self.own, name, timeout=timeout)["status"]
        return status

    def assert_no_secret_anywhere(self, operator: Operator) -> None:
        events = json.dumps(self.cluster.get("-n", self.own, "events"))
        statuses = json.dumps(self.cluster.get("-n", self.own, "rbv"))
        for where, text in (("the operator log", operator.log()), ("Events", events), ("status", statuses)):
            assert self.password not in text, f"the Secret's password is in {where}"


@pytest.fixture(scope="module")
def scene(cluster: Cluster, argocd: ArgoCD, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("trust")
    suffix = uuid.uuid4().hex[:6]
    own, other = (cluster.create_namespace(f"{n}-{suffix}") for n in ("team-a", "team-b"))
    password = secrets.token_hex(12)
    literals = {"url": SECRET_URL, "username": USERNAME, "password": password}
    cluster.kubectl(
        "-n", own, "create", "secret", "generic", SECRET, *(f"--from-literal={k}={v}" for k, v in literals.items())
    )  # fmt: skip
    values = {
        "controller": {"namespaces": [own, other]},
        "argocd": {"namespace": argocd.namespace},
        "detection": {"enabled": False, "applications": [{"name": "agents", "verificationNamespace": own}]},
    }
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    cluster.helm("install", RELEASE, str(CHART), "-n", own, "-f", str(tmp / "values.yaml"))
    recorder = Recorder.start()
    try:
        yield Scene(cluster, Cluster(service_account_kubeconfig(cluster, own, tmp)), own, other, argocd, password,
                    recorder, tmp, values)  # fmt: skip
    finally:
        recorder.server.shutdown()
        cluster.helm("uninstall", RELEASE, "-n", own, check=False)
        for ns in (own, other):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def git_spec(repo_url: str, **git: Any) -> dict[str, Any]:
    return {
        "revision": "main",
        "valuesFrom": {"git": {"repoURL": repo_url, "path": VALUES_PATH, **git}},
        "targets": [{"name": "agents", "imageValues": ["image"]}],
        "timeoutSeconds": 5,
    }


def refused(status: dict[str, Any]) -> str:
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec"), status
    assert not status.get("targets"), status  # nothing was read for a refused object
    return str(status["message"])


def test_credentials_go_only_to_the_url_their_secret_names(scene: Scene) -> None:
    # Local repositories allowed, so that the loopback server is reachable at all: the rule under test
    # is the credentials one.
    with scene.operator(allowLocalRepositories=True) as operator:
        plain = refused(
            scene.verify("creds-over-http", git_spec(scene.recorder.url, credentialsSecretRef={"name": SECRET}))
        )
        assert "credentials are never sent over plain http" in plain
        https = scene.recorder.url.replace("http://", "https://")
        other_url = refused(scene.verify("creds-elsewhere", git_spec(https, credentialsSecretRef={"name": SECRET})))
        assert f"credentials Secret {SECRET} holds credentials for the repository its url names" in other_url
        assert SECRET_URL not in other_url  # the author may not read the Secret, its url included

        # The control: the same server, without credentials, is reached (the recorder works).
        control = scene.verify("no-creds", git_spec(scene.recorder.url))
        assert (control["phase"], control["reason"]) == ("Failed", "ValuesUnavailable"), control
        assert scene.recorder.requests, "the loopback server was never reached"
        scene.assert_no_secret_anywhere(operator)
        # The chart's trimmed verbs are all it needed.
        assert "Forbidden" not in operator.log() and "403" not in operator.log(), operator.log()[-3000:]
    seen = scene.recorder.credentials_seen()
    assert not any(scene.password in s or USERNAME in s for s in seen), seen


def test_an_unusable_secret_is_said_to_be_unusable(scene: Scene) -> None:
    scene.cluster.kubectl(
        "-n", scene.own, "create", "secret", "generic", "empty-creds", f"--from-literal=url={SECRET_URL}"
    )
    with scene.operator(secret_names=(SECRET, "empty-creds")):
        message = refused(
            scene.verify("empty-secret", git_spec(SECRET_URL, credentialsSecretRef={"name": "empty-creds"}))
        )
    assert message.startswith("valuesFrom.git: credentials Secret empty-creds is unusable: it has none of the keys")


def test_local_repositories_and_services_are_refused_by_default(scene: Scene, cluster: Cluster) -> None:
    repo = GitOpsRepo(scene.tmp / "local-gitops")
    repo.commit_values(images("A"), "release A")
    api_server = json.loads(cluster.kubectl("config", "view", "--minify", "-o", "json").stdout)["clusters"][0]
    api_url = api_server["cluster"]["server"]
    before = len(scene.recorder.requests)
    with scene.operator():
        messages = {}
        for url in (repo.url, "/etc", "/no/such/folder"):
            messages[url] = refused(scene.verify(f"local-{len(messages)}", git_spec(url)))
            assert "is a repository on the operator's own filesystem" in messages[url], messages[url]
            assert "trust.allowLocalRepositories: true" in messages[url]
        # Whether a path exists on the operator's machine is not told: both messages read alike.
        assert messages["/etc"].replace("/etc", "X") == messages["/no/such/folder"].replace("/no/such/folder", "X")
        for name, url in (("loopback-service", scene.recorder.url), ("api-server", f"{api_url}/api")):
            message = refused(scene.verify(name, git_spec(url)))
            assert "names a service local to the operator" in message, message
            assert f"({urlsplit(url).hostname})" in message
        for name, url in (("fd-transport", "fd::17"), ("ext-transport", "ext::sh -c id")):
            assert "the operator allows https://, ssh://" in refused(scene.verify(name, git_spec(url)))
    assert len(scene.recorder.requests) == before, "a refused repoURL still reached the local service"


def test_local_repositories_are_read_only_where_the_settings_allow_them(scene: Scene) -> None:
    repo = GitOpsRepo(scene.tmp / "allowed-gitops")
    repo.commit_values(images("A"), "release A")
    with scene.operator(allowLocalRepositories=True):
        status = scene.verify("file-url-allowed", git_spec(repo.url))
        # Past the values (read from the local repository): the target simply does not exist.
        assert (status["phase"], status["reason"]) == ("Failed", "TargetNotFound"), status
        assert "fd::" in refused(scene.verify("fd-still-refused", git_spec("fd::17")))


def deployment_in(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "-n", namespace, "create", "deployment", "web", "--image=registry.example/team-b/web:1", "--replicas=1"
    )


TEAM_B_IMAGES = release_images(4242)  # images of team B's own: none of team A's objects may show them


def application_of_team_b(scene: Scene) -> str:
    """Team B's Application, deployed to team B's namespace by real Argo CD (a real sync: its history
    entry carries the inline Helm values the attacker would like to read)."""
    name = f"team-b-{scene.other.rsplit('-', 1)[-1]}"
    repo = GitOpsRepo(scene.tmp / f"gitops-{name}")
    repo.seed_chart()
    revision = repo.commit_values(TEAM_B_IMAGES, "team B's release")
    scene.argocd.create_application(name, repo, scene.other, helm_values=TEAM_B_IMAGES)
    scene.argocd.sync(name, revision)
    return name


def test_targets_and_applications_of_other_namespaces_are_refused_unless_mapped(scene: Scene) -> None:
    deployment_in(scene.cluster, scene.other)
    team_b_app = application_of_team_b(scene)
    cross_target = {"targets": [{"name": "web", "namespace": scene.other, "image": "registry.example/x:1"}]}
    cross_app = {
        "application": {"name": team_b_app, "namespace": scene.argocd.namespace},
        "valuesFrom": {"applicationHelmValues": True},
        "targets": [{"name": "web", "imageValues": ["image"]}],
        "timeoutSeconds": 5,
    }
    with scene.operator():
        message = refused(scene.verify("cross-target", cross_target))
        assert f"(trust.targetNamespaces.{scene.own}: [{scene.other}])" in message
        message = refused(scene.verify("cross-app", cross_app))
        assert f"may name only an Application that deploys to {scene.own}" in message
        text = json.dumps(scene.cluster.get("-n", scene.own, "rbv"))
        leaked = [TEAM_B_IMAGES["image"]["digest"], "registry.example/team-b"]
        assert not [x for x in leaked if x in text], "team B's images reached the attacker's status"

    with scene.operator(targetNamespaces={scene.own: [scene.other]}):
        mapped = scene.verify("cross-target-mapped", {**cross_target, "timeoutSeconds": 10})
        assert mapped["reason"] != "InvalidSpec", mapped
        assert [t["namespace"] for t in mapped["targets"]] == [scene.other]
        app = scene.verify(
            "cross-app-mapped",
            {**cross_app, "targets": [{"name": "web", "namespace": scene.other, "imageValues": ["image"]}]},
        )
        # Past the trust rules and the values (the mapped Application's history was read).
        assert app["reason"] not in ("InvalidSpec", "ValuesUnavailable"), app


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_metrics_bind_to_the_given_address_only(scene: Scene) -> None:
    # Every 127.0.0.0/8 address is this machine's: a listener on all addresses answers on 127.0.0.2 too.
    with scene.operator() as everywhere:
        assert reachable("127.0.0.2", everywhere.metrics_port)
    with scene.operator(extra=["--metrics-address", "127.0.0.1"]) as bound:
        assert "# HELP rollback_verification_" in bound.metrics()  # served on 127.0.0.1
        assert not reachable("127.0.0.2", bound.metrics_port)
