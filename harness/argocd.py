"""Real Argo CD against the local cluster: its repo-server, application controller and API server run
as host processes (`ARGOCD_FAKE_IN_CLUSTER=true` + $KUBECONFIG makes `https://kubernetes.default.svc`
the local cluster), with Debian's redis-server as their cache, and the real `argocd` CLI drives them.
The binary and the manifests come from tests/e2e/cluster/build-binaries.sh (ARGOCD_VERSION in
versions.env).

    with ArgoCD(cluster, home) as argocd:     # install(), start(), and stop() on the way out
        argocd.create_application("agents", repo, "agents")
        argocd.sync("agents", rev_a)
        argocd.rollback("agents")

Every process it starts is stopped by stop() (also when start() fails half-way, and at interpreter
exit); the components' logs stay in `<home>/logs`, and their tails are in every error it raises.
More components (e.g. the notifications controller) go through `start_component`.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from harness.agents import CHART_PATH, VALUES_PATH, GitOpsRepo
from harness.support import ROOT, Cluster, stop_process
from rollback_verifier.tools import BIN_DIR_ENV, ToolMissing, find_tool

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
IN_CLUSTER = "https://kubernetes.default.svc"
HEALTH_SNIPPET = ROOT / "deploy" / "argocd" / "argocd-cm-health-snippet.yaml"
PART_OF = {"app.kubernetes.io/part-of": "argocd"}  # the settings informer only sees objects with this label
TERMINAL = ("Succeeded", "Failed", "Error")
# Its own requests (waits on the Application) apart from the operator's in an audit log.
HARNESS_USER_AGENT = "rv-argocd-harness/1"
# The controller's metrics listener has no address flag and binds every interface.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
START_TIMEOUT = 90.0  # seconds for one component to come up (cold start on 2 busy cores)


class ArgoCDError(RuntimeError):
    """Argo CD could not be installed or started; the message says why and what to do."""


class CommandFailed(AssertionError):
    """An `argocd` CLI command exited non-zero; `.stderr` holds what it said."""

    def __init__(self, args: Iterable[str], returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        super().__init__(f"argocd {' '.join(args)} exited {returncode}:\n{stderr.strip() or stdout.strip()}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _timestamp(value: Any) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else 0.0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the components. The controller's metrics listener binds 0.0.0.0 (it has no
    address flag), so its port must be free on every interface."""

    redis: int
    repo_server: int
    repo_server_metrics: int
    controller_metrics: int
    server: int
    server_metrics: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(ALL_INTERFACES), free_port(), free_port())


@dataclass(frozen=True)
class Component:
    """One host process: `binary_name` is the role of Argo CD's multi-call binary (ARGOCD_BINARY_NAME),
    None for a program of its own (`args[0]`); it is up once `ready_port` accepts connections.
    `all_interfaces`: it binds 0.0.0.0 (no address flag), so the port must be free on every interface."""

    name: str
    args: list[str]
    ready_port: int
    binary_name: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    all_interfaces: bool = False


@dataclass
class _Running:
    component: Component
    process: subprocess.Popen[bytes]
    log: Path


class ArgoCD:
    def __init__(
        self,
        cluster: Cluster,
        home: Path,
        *,
        namespace: str = "argocd",
        ports: Ports | None = None,
        bin_dir: Path | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.cluster = cluster
        self.home = home
        self.namespace = namespace
        self.ports = ports or Ports.free()
        argocd = self.argocd_bin  # no binary: say so now, before anything is started
        self.bin_dir = bin_dir or Path(os.environ.get(BIN_DIR_ENV) or Path(argocd).parent)
        self.start_timeout = start_timeout
        self.logs = home / "logs"
        self.cli_config = home / "cli-config"  # the CLI's config file (--config)
        self._running: list[_Running] = []
        self._api: client.CustomObjectsApi | None = None

    # -- binaries and manifests -------------------------------------------------------------------
    @property
    def argocd_bin(self) -> str:
        try:
            return find_tool("argocd")
        except ToolMissing as exc:
            raise ArgoCDError(
                f"no argocd binary: {exc}. tests/e2e/cluster/build-binaries.sh builds it into the cache"
            ) from None

    def manifest(self, name: str) -> Path:
        path = self.bin_dir / "argocd-manifests" / name
        if not path.is_file():
            raise ArgoCDError(f"{path} is missing: run tests/e2e/cluster/build-binaries.sh (make tools) first")
        return path

    @property
    def api(self) -> client.CustomObjectsApi:
        if self._api is None:
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(self.cluster.kubeconfig), client_configuration=cfg)
            api = client.ApiClient(cfg)
            api.user_agent = HARNESS_USER_AGENT
            self._api = client.CustomObjectsApi(api)
        return self._api

    # -- install ----------------------------------------------------------------------------------
    def install(self, with_notifications: bool = False) -> None:
        """Argo CD's CRDs, its config objects from install.yaml (argocd-cm with this project's health
        check for RollbackVerification registered), and the `default` AppProject."""
        crds = [self.manifest(f"{kind}-crd.yaml") for kind in ("application", "appproject", "applicationset")]
        files = [arg for crd in crds for arg in ("-f", str(crd))]
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
        for crd in ("applications.argoproj.io", "appprojects.argoproj.io"):
            # Right after creation a CRD has no conditions yet and `kubectl wait` errors out: retry.
            def established(c: str = crd) -> bool:
                wait = ("wait", "--for=condition=Established", f"crd/{c}", "--timeout=5s")
                return self.cluster.kubectl(*wait, check=False).returncode == 0

            self.cluster.wait_for(
                established,
                timeout=60,
                what=f"crd/{crd} to be Established",
                interval=0.5,
            )
        if self.cluster.kubectl("get", "namespace", self.namespace, check=False).returncode != 0:
            self.cluster.kubectl("create", "namespace", self.namespace)
        self.cluster.apply(yaml.safe_dump_all(self.config_objects(with_notifications)), self.namespace)
        self.cluster.apply(
            json.dumps(
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "AppProject",
                    "metadata": {"name": "default", "namespace": self.namespace},
                    "spec": {
                        "sourceRepos": ["*"],
                        "destinations": [{"server": "*", "namespace": "*"}],
                        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                    },
                }
            ),
            self.namespace,
        )

    def config_objects(self, with_notifications: bool = False) -> list[dict[str, Any]]:
        docs = [d for d in yaml.safe_load_all(self.manifest("install.yaml").read_text()) if d]
        health = yaml.safe_load(HEALTH_SNIPPET.read_text())["data"]
        out = []
        for doc in docs:
            name = doc["metadata"]["name"]
            if doc["kind"] not in ("ConfigMap", "Secret") or ("notifications" in name and not with_notifications):
                continue
            doc["metadata"]["namespace"] = self.namespace
            doc["metadata"].setdefault("labels", {}).update(PART_OF)
            if name == "argocd-cm":
                doc["data"] = {**(doc.get("data") or {}), **health}
            out.append(doc)
        return out

    # -- processes --------------------------------------------------------------------------------
    def __enter__(self) -> ArgoCD:
        self.install()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def component_env(self) -> dict[str, str]:
        run = self.home / "run"
        dirs = {
            "ARGOCD_TLS_DATA_PATH": run / "tls",
            "ARGOCD_SSH_DATA_PATH": run / "ssh",
            "ARGOCD_GNUPGHOME": run / "gpg" / "keys",
            "ARGOCD_GPG_DATA_PATH": run / "gpg" / "source",
            "TMPDIR": run / "tmp",  # the repo-server clones under $TMPDIR/_argocd-repo
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        # helm, git and argocd itself (the git askpass helper) from the cluster's bin folder first.
        path = os.pathsep.join([str(self.bin_dir), str(Path(self.argocd_bin).parent), os.environ.get("PATH", "")])
        return {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_GPG_ENABLED": "false",
            "PATH": path,
            **{k: str(v) for k, v in dirs.items()},
        }

    def components(self) -> list[Component]:
        p, ns, redis = self.ports, self.namespace, f"127.0.0.1:{self.ports.redis}"
        repo = f"127.0.0.1:{p.repo_server}"
        common = ["--loglevel", "info", "--logformat", "text"]
        static = self.home / "run" / "static"
        static.mkdir(parents=True, exist_ok=True)
        return [
            Component(
                "redis",
                [self.redis_bin, "--port", str(p.redis), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                p.redis,
            ),
            Component(
                "repo-server",
                [
                    *("--address", "127.0.0.1", "--port", str(p.repo_server)),
                    *("--metrics-address", "127.0.0.1", "--metrics-port", str(p.repo_server_metrics)),
                    *("--redis", redis, *common),
                ],
                p.repo_server,
                "argocd-repo-server",
            ),
            Component(
                "application-controller",
                [
                    "--namespace",
                    ns,
                    "--redis",
                    redis,
                    "--repo-server",
                    repo,
                    "--metrics-port",
                    str(p.controller_metrics),
                    *common,
                ],
                p.controller_metrics,
                "argocd-application-controller",
                all_interfaces=True,
            ),
            Component(
                "server",
                [
                    *("--namespace", ns, "--redis", redis, "--repo-server", repo, "--insecure"),
                    *("--address", "127.0.0.1", "--port", str(p.server)),
                    *("--metrics-address", "127.0.0.1", "--metrics-port", str(p.server_metrics)),
                    *("--staticassets", str(static), *common),
                ],
                p.server,
                "argocd-server",
            ),
        ]

    @property
    def redis_bin(self) -> str:
        found = shutil.which("redis-server")
        if found is None:
            raise ArgoCDError(
                "redis-server is not installed (Argo CD's cache): apt-get install redis-server "
                "(.ci/run installs it when missing)"
            )
        return found

    def start(self) -> None:
        """Start redis, repo-server, application controller and server, and log the CLI in. On any
        failure, everything started so far is stopped before the error is raised."""
        atexit.register(self.stop)
        try:
            for component in self.components():
                self.start_component(component)
            self.login()
        except BaseException:
            self.stop()
            raise

    def start_component(self, component: Component) -> None:
        """Start one process and wait (bounded) until its port accepts connections."""
        host = ALL_INTERFACES if component.all_interfaces else "127.0.0.1"
        if port_taken(component.ready_port, host):
            raise ArgoCDError(
                f"port {component.ready_port} for Argo CD's {component.name} is taken by another process; "
                "stop it or choose other ports (Ports(...))"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{component.name}.log"
        env = {**self.component_env(), **component.env}
        args = component.args
        if component.binary_name is not None:
            env["ARGOCD_BINARY_NAME"] = component.binary_name
            args = [self.argocd_bin, *args]
        with log.open("wb") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        running = _Running(component, process, log)
        self._running.append(running)
        try:
            self._wait_up(running)
        except BaseException:
            self._running.remove(running)
            stop_process(running.process, timeout=10)
            raise

    def configure_notifications(self, data: Mapping[str, str]) -> None:
        """Apply install.yaml's argocd-notifications-cm (with `data` merged in) and -secret, for a
        session whose install() left them out."""
        objects = [o for o in self.config_objects(with_notifications=True) if "notifications" in o["metadata"]["name"]]
        for obj in objects:
            if obj["kind"] == "ConfigMap":
                obj["data"] = {**(obj.get("data") or {}), **data}
        self.cluster.apply(yaml.safe_dump_all(objects), self.namespace)

    def start_notifications(self) -> None:
        """Start the notifications controller (it reads argocd-notifications-cm and -secret: install
        them with install(with_notifications=True)); stop() stops it with the rest."""
        metrics = free_port(ALL_INTERFACES)  # it has no address flag either
        args = ["--namespace", self.namespace, "--metrics-port", str(metrics), "--loglevel", "info"]
        component = Component("notifications-controller", args, metrics, "argocd-notifications", all_interfaces=True)
        self.start_component(component)

    def _wait_up(self, running: _Running) -> None:
        component, process, log = running.component, running.process, running.log
        deadline = time.monotonic() + self.start_timeout
        while not _listening(component.ready_port):
            if process.poll() is not None:
                hint = ""
                if "address already in use" in _tail(log, 200).lower():
                    hint = f" (port {component.ready_port} or another of its ports is taken)"
                raise ArgoCDError(
                    f"Argo CD's {component.name} exited with {process.returncode}{hint}; log {log}:\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise ArgoCDError(
                    f"Argo CD's {component.name} did not open port {component.ready_port} within "
                    f"{self.start_timeout:.0f}s; log {log}:\n{_tail(log)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every process this object started (newest first): SIGTERM, then SIGKILL after 10 s."""
        while self._running:
            stop_process(self._running.pop().process, timeout=10)
        atexit.unregister(self.stop)

    def logs_tail(self) -> str:
        return "\n".join(f"----- {r.log}\n{_tail(r.log)}" for r in self._running)

    # -- the CLI ----------------------------------------------------------------------------------
    def admin_password(self) -> str:
        def read() -> str | None:
            proc = self.cluster.kubectl(
                "-n", self.namespace, "get", "secret", "argocd-initial-admin-secret", "-o", "json", check=False
            )
            if proc.returncode != 0:
                return None
            data = json.loads(proc.stdout).get("data") or {}
            return base64.b64decode(data["password"]).decode() if data.get("password") else None

        try:
            password: str = self.cluster.wait_for(read, 60, "argocd-server to write argocd-initial-admin-secret")
        except AssertionError as exc:
            raise ArgoCDError(f"{exc}; server log:\n{_tail(self.logs / 'server.log')}") from None
        return password

    def login(self) -> None:
        self.cli(
            "login",
            f"127.0.0.1:{self.ports.server}",
            "--plaintext",
            "--username",
            "admin",
            "--password",
            self.admin_password(),
        )

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """The real `argocd` CLI, logged in to this server, with a config file of its own (not ~/.config)."""
        proc = subprocess.run(
            [self.argocd_bin, *args, "--config", str(self.cli_config)],
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandFailed(args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    # -- Applications -----------------------------------------------------------------------------
    def application(
        self,
        name: str,
        repo_url: str,
        dest_namespace: str,
        *,
        automated: bool = False,
        multi_source: bool = False,
        helm_values: dict[str, Any] | None = None,
        cluster: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The agents Application as a GitOps setup declares it: the chart at charts/agents, the values
        file reached relative to the chart path (or, multi-source, through a `ref: values` source).
        `cluster`: its destination cluster ({name} or {server} of a cluster Secret; default in-cluster)."""
        helm: dict[str, Any] = {"releaseName": "agents"}
        if multi_source:
            helm["valueFiles"] = [f"$values/{VALUES_PATH}"]
        else:
            helm["valueFiles"] = [os.path.relpath(VALUES_PATH, CHART_PATH)]
        if helm_values is not None:
            helm["valuesObject"] = helm_values
        chart = {"repoURL": repo_url, "path": CHART_PATH, "targetRevision": "main", "helm": helm}
        destination = {**(cluster or {"server": IN_CLUSTER}), "namespace": dest_namespace}
        spec: dict[str, Any] = {"project": "default", "destination": destination}
        if multi_source:
            spec["sources"] = [chart, {"repoURL": repo_url, "targetRevision": "main", "ref": "values"}]
        else:
            spec["source"] = chart
        spec["syncPolicy"] = {"syncOptions": ["ServerSideApply=true"]}
        if automated:
            spec["syncPolicy"]["automated"] = {"prune": False, "selfHeal": False}
        return {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    def create_application(self, name: str, repo: GitOpsRepo, dest_namespace: str, **options: Any) -> dict[str, Any]:
        """Create the Application and wait until the controller has reconciled it once."""
        self.cluster.apply(json.dumps(self.application(name, repo.url, dest_namespace, **options)), self.namespace)
        return self.wait(name, lambda a: bool((a.get("status") or {}).get("reconciledAt")), "its first reconcile")

    def delete_application(self, name: str) -> None:
        self.cluster.kubectl(
            "-n", self.namespace, "delete", "applications.argoproj.io", name, "--wait=false", check=False
        )

    def get(self, name: str) -> dict[str, Any]:
        app = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return cast(dict[str, Any], app)

    def history(self, name: str) -> list[dict[str, Any]]:
        return list((self.get(name).get("status") or {}).get("history") or [])

    def wait(
        self, name: str, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 120
    ) -> dict[str, Any]:
        """Wait (bounded) on a watch of the Application until `done(app)`; the app is returned."""
        deadline = time.monotonic() + timeout
        app = self.get(name)
        while not done(app):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for Application {name}: {what}; status now:\n"
                    f"{json.dumps(app.get('status'), indent=1)[-3000:]}"
                )
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=app["metadata"]["resourceVersion"],
                timeout_seconds=max(1, int(min(left, 30))),
            )
            try:
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        app = event["object"]
                        if done(app):
                            break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                app = self.get(name)
        return app

    def settle(
        self, name: str, history_length: int | None = None, healthy: bool = True, timeout: float = 120
    ) -> dict[str, Any]:
        """Wait until the last operation is over and the controller compared the app after it: no
        `.operation`, a finished operationState, `reconciledAt` not older than its `finishedAt` (right
        after an operation, health can still be the one from before it), and optionally `history_length`
        entries and a Healthy app."""

        def done(app: dict[str, Any]) -> bool:
            status = app.get("status") or {}
            op = status.get("operationState") or {}
            if app.get("operation") or op.get("phase") not in TERMINAL:
                return False
            if _timestamp(status.get("reconciledAt")) < _timestamp(op.get("finishedAt")):
                return False
            if history_length is not None and len(status.get("history") or ()) != history_length:
                return False
            return not healthy or (status.get("health") or {}).get("status") == "Healthy"

        what = f"the operation to settle (history of {history_length}, healthy={healthy})"
        return self.wait(name, done, what, timeout)

    def _operate(
        self, name: str, args: list[str], check: bool, healthy: bool, grows: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        before = len(self.history(name))
        proc = self.cli(*args, "--timeout", "120", check=check)
        length = min(before + 1, self.history_limit(name)) if grows and proc.returncode == 0 else None
        return proc, self.settle(name, history_length=length, healthy=healthy and proc.returncode == 0)

    def history_limit(self, name: str) -> int:
        return int((self.get(name).get("spec") or {}).get("revisionHistoryLimit") or 10)

    def sync(
        self, name: str, revision: str | None = None, *, prune: bool = False, healthy: bool = True
    ) -> dict[str, Any]:
        """`argocd app sync` (of `revision` when given: what a just-made commit needs, since Argo CD does
        not watch git), then wait until it settled; a failed sync raises CommandFailed."""
        args = ["app", "sync", name, *self._revision_args(name, revision), *(["--prune"] if prune else [])]
        return self._operate(name, args, check=True, healthy=healthy)[1]

    def _revision_args(self, name: str, revision: str | None) -> list[str]:
        """--revision, or for a multi-source app the same revision for every source (the CLI refuses
        --revision there)."""
        if not revision:
            return []
        sources = (self.get(name).get("spec") or {}).get("sources") or []
        if not sources:
            return ["--revision", revision]
        positions = ",".join(str(i) for i in range(1, len(sources) + 1))
        return [arg for _ in sources for arg in ("--revisions", revision)] + ["--source-positions", positions]

    def try_sync(
        self, name: str, revision: str | None = None
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """`argocd app sync` that may fail: the CLI's answer and the settled Application."""
        return self._operate(
            name, ["app", "sync", name, *self._revision_args(name, revision)], check=False, healthy=False
        )

    def rollback(self, name: str, history_id: int | None = None, *, healthy: bool = True) -> dict[str, Any]:
        """`argocd app rollback NAME [ID]` (no ID: the entry before the newest), waited until settled."""
        args = ["app", "rollback", name] + ([str(history_id)] if history_id is not None else [])
        return self._operate(name, args, check=True, healthy=healthy)[1]

    def refresh(self, name: str) -> dict[str, Any]:
        """Argo CD does not watch git: ask for a comparison with the branch head (the refresh annotation,
        which the controller removes once it has compared)."""
        self.cluster.kubectl(
            "-n", self.namespace, "annotate", "--overwrite", "applications.argoproj.io", name,
            "argocd.argoproj.io/refresh=normal",
        )  # fmt: skip
        return self.wait(
            name,
            lambda a: "argocd.argoproj.io/refresh" not in (a["metadata"].get("annotations") or {}),
            "the refresh to be done",
        )

    # -- argocd-server's API (what the UI shows) --------------------------------------------------
    def api_get(self, path: str) -> Any:
        """GET on argocd-server's REST API with the CLI's session token (e.g. a resource tree)."""
        token = yaml.safe_load(self.cli_config.read_text())["users"][0]["auth-token"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports.server}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - our own http:// URL
            return json.loads(resp.read().decode())

    def resource_tree(self, name: str) -> list[dict[str, Any]]:
        """The Application's resource tree nodes (hooks included, with the health Argo CD computed)."""
        nodes: list[dict[str, Any]] = self.api_get(f"/api/v1/applications/{name}/resource-tree").get("nodes") or []
        return nodes
