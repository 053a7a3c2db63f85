"""A test double of Argo CD's application controller (and the bits of its API server and CLI the e2e tests use).

It drives real `argoproj.io/v1alpha1` Applications on the real local cluster exactly the way Argo CD v3.x does: it
resolves revisions with real git, renders the chart at that revision with real `helm template` (in a checkout made
with `git archive`, the way the repo-server works from a clone), applies the objects with real kubectl, and writes
`.operation`, `status.operationState`, `status.history`, `status.sync`, `status.health`, `status.resources` and
`status.summary` with the field names, omissions, ordering and messages of the real thing.

Every behaviour cites the Argo CD source it mirrors (argoproj/argo-cd v3.x, gitops-engine now lives in that repo
under gitops-engine/). Facts from /work/shared/spec/argocd-behaviour.md are not repeated here. What the double does
NOT do: hooks and sync waves (none in the agents chart), retries, sync windows, AppProjects (nothing creates the
`default` one), Kubernetes Events, `--api-versions` for helm, cluster-scoped resources, diff normalisation
(`ignoreDifferences`). It is synchronous: a call returns when the controller would have finished the operation.

Typical use:

    argocd = ArgoCD(cluster, namespace=f"{namespace}-argocd")
    argocd.install()
    seed_repo(repo)
    rev1 = repo.commit_values(images("A"), "release A")
    argocd.create_application("agents", repo, namespace)
    argocd.sync("agents")                        # Synced, Healthy, history [id 0]
    rev2 = repo.commit_values(images("B"), "release B")
    argocd.sync("agents")                        # history [id 0, id 1]
    argocd.rollback("agents")                    # history [0, 1, 2]; entry 2 has revision rev1; OutOfSync
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from rollback_verifier.tools import find_tool
from tests.e2e.agents import VALUES_PATH, GitOpsRepo
from tests.e2e.support import AGENTS_CHART, Cluster

# --- constants, each from the file that defines it -------------------------------------------------------------

APPLICATION_RESOURCE = "applications.argoproj.io"
# pkg/apis/application/v1alpha1/types.go: DefaultAppProjectName; common/common.go: RevisionHistoryLimit.
DEFAULT_PROJECT = "default"
DEFAULT_REVISION_HISTORY_LIMIT = 10
IN_CLUSTER = "https://kubernetes.default.svc"
# common/common.go: AnnotationKeyAppInstance (the v3 default tracking method is `annotation`: util/argo/
# resource_tracking.go SetAppInstance falls to setAppInstanceAnnotation when argocd-cm sets no method) and
# LabelKeyAppInstance (used only by the `label` and `annotation+label` methods).
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# common/common.go: ArgoCDSSAManager, the field manager of server-side apply.
SSA_MANAGER = "argocd-controller"

CHART_PATH = "charts/agents"
# Real GitOps setups point the Application at the chart and reach the values file relative to the chart path
# (reposerver/repository/repository.go resolves value files against the app path, inside the repo root).
VALUES_FILE = "../../" + VALUES_PATH

# gitops-engine/pkg/sync/sync_tasks.go kindOrder (Helm's install order): the order resources are applied in.
KIND_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget",
    "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job",
    "CronJob", "IngressClass", "Ingress", "APIService",
]  # fmt: skip

# gitops-engine/pkg/health/health.go healthOrder, most to least healthy (IsWorse).
HEALTH_ORDER = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"]

# Kinds Argo CD never tracks (util/settings default resource.exclusions, and what the cluster cache skips).
UNTRACKED_KINDS = {"Event", "Lease", "Endpoints", "EndpointSlice"}


def now() -> str:
    """metav1.Time as Argo CD serialises it: RFC 3339, UTC, whole seconds, `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- errors: what the API server or CLI answers ---------------------------------------------------------------


class ArgoCDError(Exception):
    """An error the Argo CD API server (a gRPC status) or CLI would return; `code` is the gRPC code name."""

    def __init__(self, message: str, code: str = "Unknown") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class RollbackRefused(ArgoCDError):
    """server/application/application.go Rollback: FailedPrecondition while automated sync is enabled."""

    def __init__(self) -> None:
        super().__init__("rollback cannot be initiated when auto-sync is enabled", "FailedPrecondition")


class AnotherOperationInProgress(ArgoCDError):
    """util/argo/argo.go SetAppOperation: `.operation` is already set."""

    def __init__(self) -> None:
        super().__init__("another operation is already in progress", "FailedPrecondition")


class HistoryNotFound(ArgoCDError):
    """cmd/argocd/commands/app.go findRevisionHistory / the server's Rollback: no such history entry."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "InvalidArgument")


class RevisionNotFound(ArgoCDError):
    """The repo-server cannot resolve a revision (util/git client: `Unable to resolve '%s' to a commit SHA`)."""

    def __init__(self, revision: str) -> None:
        super().__init__(f"Unable to resolve '{revision}' to a commit SHA", "Unknown")


class SyncOperationFailed(ArgoCDError):
    """Raised by the double (not Argo CD) when `check=True` and the operation ended Failed or Error.

    The Application is fully written (operationState, no history entry) before this is raised."""

    def __init__(self, app: dict[str, Any]) -> None:
        state = app["status"]["operationState"]
        super().__init__(f"sync operation ended {state['phase']}: {state.get('message', '')}", state["phase"])
        self.app = app
        self.phase: str = state["phase"]


class HealthTimeout(AssertionError):
    """The application did not reach the awaited health in time (test-side waiting)."""


class ApplicationDegraded(AssertionError):
    """`sync(wait_healthy=True)` found the application Degraded instead of Healthy (test-side waiting)."""


# --- the GitOps repository ------------------------------------------------------------------------------------


def seed_repo(repo: GitOpsRepo, chart: Path = AGENTS_CHART, path: str = CHART_PATH) -> str:
    """Copy a chart (default: the fixture agents chart) into the GitOps repo at `path` and commit it."""
    dest = repo.path / path
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(chart, dest)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", f"add the {chart.name} chart at {path}")
    return repo.git("rev-parse", "HEAD")


def commit_file(repo: GitOpsRepo, path: str, content: str, message: str) -> str:
    """Commit raw text (e.g. a values file that does not parse) and return the new commit SHA."""
    file = repo.path / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(content)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message)
    return repo.git("rev-parse", "HEAD")


def revert_commit(repo: GitOpsRepo, sha: str) -> str:
    """`git revert` of one commit: just a new commit (argocd-behaviour.md, "git revert of a values commit")."""
    repo.git("revert", "--no-edit", sha)
    return repo.git("rev-parse", "HEAD")


def _repo_dir(repo_url: str) -> Path:
    parsed = urllib.parse.urlparse(repo_url)
    if parsed.scheme != "file":
        raise ArgoCDError(f"the Argo CD double only reaches file:// repositories, not {repo_url}")
    return Path(urllib.parse.unquote(parsed.path))


def _git(repo_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(
        [find_tool("git"), "-C", str(repo_dir), *args], capture_output=True, env=env, timeout=60, check=False
    )


def resolve_revision(repo_url: str, revision: str) -> str:
    """The repo-server's ResolveRevision (reposerver/repository/repository.go, util/git/client.go LsRemote): a
    branch, then a tag, then a commit SHA; HEAD or "" is the default branch."""
    repo_dir = _repo_dir(repo_url)
    candidates = ["HEAD"] if revision in ("", "HEAD") else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
    if revision and re.fullmatch(r"[0-9a-f]{7,40}", revision):
        candidates.append(revision)
    for candidate in candidates:
        proc = _git(repo_dir, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if proc.returncode == 0:
            return proc.stdout.decode().strip()
    raise RevisionNotFound(revision)


@contextmanager
def _checkout(repo_url: str, sha: str) -> Iterator[Path]:
    """The repository's tree at one commit in a temporary directory (read-only for the repo: `git archive`)."""
    proc = _git(_repo_dir(repo_url), "archive", "--format=tar", sha)
    if proc.returncode != 0:
        raise ArgoCDError(f"unable to checkout git repo {repo_url} at {sha}: {proc.stderr.decode().strip()}")
    with tempfile.TemporaryDirectory(prefix="argocd-repo-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


# --- resource helpers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ResourceKey:
    """gitops-engine/pkg/utils/kube ResourceKey: group, kind, namespace, name (the version is not part of it)."""

    group: str
    kind: str
    namespace: str
    name: str

    @staticmethod
    def of(obj: Mapping[str, Any]) -> ResourceKey:
        group, _ = _group_version(obj)
        meta = obj.get("metadata") or {}
        return ResourceKey(group, obj["kind"], meta.get("namespace") or "", meta["name"])


def _group_version(obj: Mapping[str, Any]) -> tuple[str, str]:
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return group, version


def _images(obj: Mapping[str, Any]) -> list[str]:
    """gitops-engine/pkg/utils/kube GetResourceImages: the images of a pod or pod template."""
    spec = obj.get("spec") or {}
    pod_spec = spec if obj.get("kind") == "Pod" else ((spec.get("template") or {}).get("spec") or {})
    return [c["image"] for key in ("initContainers", "containers") for c in pod_spec.get(key) or () if "image" in c]


def _deployment_health(obj: Mapping[str, Any]) -> dict[str, str]:
    """gitops-engine/pkg/health/health_deployment.go getAppsv1DeploymentHealth (kubectl's rollout status rule)."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return {"status": "Progressing", "message": "Pending deletion"}
    if spec.get("paused"):
        return {"status": "Suspended", "message": "Deployment is paused"}
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return {
            "status": "Progressing",
            "message": "Waiting for rollout to finish: observed deployment generation less than desired generation",
        }
    progressing = next((c for c in status.get("conditions") or () if c.get("type") == "Progressing"), None)
    replicas = spec.get("replicas", 1)
    updated, current = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    name = meta.get("name")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return {"status": "Degraded", "message": f'Deployment "{name}" exceeded its progress deadline'}
    if updated < replicas:
        return {
            "status": "Progressing",
            "message": f"Waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated...",
        }
    if current > updated:
        return {
            "status": "Progressing",
            "message": f"Waiting for rollout to finish: {current - updated} old replicas are pending termination...",
        }
    if available < updated:
        return {
            "status": "Progressing",
            "message": f"Waiting for rollout to finish: {available} of {updated} updated replicas are available...",
        }
    return {"status": "Healthy"}


def resource_health(obj: Mapping[str, Any]) -> dict[str, str] | None:
    """gitops-engine/pkg/health/health.go GetResourceHealth for the kinds the agents chart renders; None for kinds
    without a health check (a ConfigMap), which then do not count towards the application's health."""
    group, _ = _group_version(obj)
    if group == "apps" and obj.get("kind") == "Deployment":
        return _deployment_health(obj)
    return None


def _worse(current: str, new: str) -> bool:
    return HEALTH_ORDER.index(new) > HEALTH_ORDER.index(current)


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def _clean(message: str) -> str:
    """kubectl's CLI prefix off an API error, leaving the error text the controller's client library returns."""
    text = message.strip().splitlines()[-1] if message.strip() else message
    return re.sub(r"^(error: )?Error from server( \([A-Za-z]+\))?: ", "", text)


# --- the comparison (controller/state.go CompareAppState) --------------------------------------------------------


@dataclass
class Managed:
    """One managed resource: its key, the desired object (None: requires pruning) and the live one."""

    key: ResourceKey
    target: dict[str, Any] | None
    live: dict[str, Any] | None


@dataclass
class Comparison:
    revisions: list[str]
    sources: list[dict[str, Any]]
    multi_source: bool
    error: str | None = None
    managed: list[Managed] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    sync_code: str = "Unknown"
    health: str = "Unknown"
    source_types: list[str] = field(default_factory=list)

    @property
    def compared_to(self) -> dict[str, Any]:
        if self.multi_source:
            # ComparedTo.Source is a struct value: encoding/json emits the zero source even with omitempty.
            return {"source": {"repoURL": ""}, "sources": self.sources}
        return {"source": self.sources[0]}


class ArgoCD:
    """Argo CD's application controller, API server (sync, rollback) and CLI defaults, for Applications in
    `namespace` (the controller's namespace: Applications there are tracked by their bare name)."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str = "argocd",
        *,
        tracking_method: str = "annotation",
        persist_resource_health: bool = False,
    ) -> None:
        if tracking_method not in ("annotation", "label", "annotation+label"):
            raise ValueError(f"unknown tracking method {tracking_method!r}")
        self.cluster = cluster
        self.namespace = namespace
        # argocd-cm application.resourceTrackingMethod (default annotation in v3) and argocd-cmd-params-cm
        # controller.resource.health.persist (default false since 3.0).
        self.tracking_method = tracking_method
        self.persist_resource_health = persist_resource_health
        self._api: dict[tuple[str, str], dict[str, Any]] | None = None
        self._kube_version: str | None = None

    # --- installation ---------------------------------------------------------------------------------------

    def install_crd(self) -> None:
        """Argo CD's own Application CRD (v3.5.1, from its Go module), idempotently: many tests share a cluster."""
        crd = Path(os.environ.get("RV_BIN_DIR", "")) / "argocd-application-crd.yaml"
        if not crd.is_file():
            raise AssertionError(f"{crd} is missing: `make tools` puts Argo CD's Application CRD there")
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))

        def established() -> bool:
            crd = self.cluster.get("crd", APPLICATION_RESOURCE)
            conditions = (crd.get("status") or {}).get("conditions") or ()
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

        self.cluster.wait_for(established, timeout=60, what=f"the CRD {APPLICATION_RESOURCE} to be Established")

    def install(self) -> None:
        """The CRD and the controller namespace (created if missing)."""
        self.install_crd()
        if self.cluster.kubectl("get", "namespace", self.namespace, check=False).returncode != 0:
            self.cluster.kubectl("create", "namespace", self.namespace, check=False)

    # --- the Application object -----------------------------------------------------------------------------

    def get(self, app_name: str) -> dict[str, Any]:
        app: dict[str, Any] = self.cluster.get("-n", self.namespace, APPLICATION_RESOURCE, app_name)
        return app

    def history(self, app_name: str) -> list[dict[str, Any]]:
        return list((self.get(app_name).get("status") or {}).get("history") or [])

    def _patch(self, app_name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the whole object: the Application CRD has no status subresource, and the
        controller writes status with merge patches (controller/appcontroller.go persistAppStatus,
        setOperationState; controller/state.go persistRevisionHistory)."""
        out = self.cluster.kubectl(
            "-n", self.namespace, "patch", APPLICATION_RESOURCE, app_name,
            "--type", "merge", "-p", json.dumps(patch), "-o", "json",
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def create_application(
        self,
        name: str,
        repo: GitOpsRepo,
        dest_namespace: str,
        *,
        target_revision: str = "main",
        chart_path: str = CHART_PATH,
        values_file: str = VALUES_PATH,
        automated: bool = False,
        revision_history_limit: int | None = None,
        multi_source: bool = False,
        helm_values: dict[str, Any] | None = None,
        server_side_apply: bool = True,
        project: str = DEFAULT_PROJECT,
    ) -> dict[str, Any]:
        """A real Application. Single source: the chart with `helm.valueFiles` relative to the chart path.
        Multi-source (the documented pattern): the chart source reads `$values/<values_file>` from a second,
        `ref: values` source of the same repository. `server_side_apply` adds the `ServerSideApply=true` sync
        option, so that syncs server-side apply with Argo CD's field manager (otherwise client-side apply)."""
        helm: dict[str, Any] = {}
        if multi_source:
            helm["valueFiles"] = [f"$values/{values_file}"]
        else:
            helm["valueFiles"] = [os.path.relpath(values_file, chart_path)]
        if helm_values is not None:
            helm["valuesObject"] = helm_values
        chart_source = {"repoURL": repo.url, "path": chart_path, "targetRevision": target_revision, "helm": helm}
        spec: dict[str, Any] = {
            "project": project,
            "destination": {"server": IN_CLUSTER, "namespace": dest_namespace},
        }
        if multi_source:
            spec["sources"] = [chart_source, {"repoURL": repo.url, "targetRevision": target_revision, "ref": "values"}]
        else:
            spec["source"] = chart_source
        policy: dict[str, Any] = {}
        if automated:
            policy["automated"] = {"prune": False, "selfHeal": False}
        if server_side_apply:
            policy["syncOptions"] = ["ServerSideApply=true"]
        if policy:
            spec["syncPolicy"] = policy
        if revision_history_limit is not None:
            spec["revisionHistoryLimit"] = revision_history_limit
        manifest = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        self.cluster.kubectl("-n", self.namespace, "create", "-f", "-", input=json.dumps(manifest))
        return self.get(name)

    def set_target_revision(self, app_name: str, revision: str, source_index: int | None = None) -> dict[str, Any]:
        """`argocd app set APP --revision REV` (pin targetRevision back or forward); all sources when multi-source
        and no index is given. Like the real controller, the double refreshes after a spec change."""
        app = self.get(app_name)
        spec = app["spec"]
        if spec.get("sources"):
            sources = copy.deepcopy(spec["sources"])
            for i, source in enumerate(sources):
                if source_index is None or i == source_index:
                    source["targetRevision"] = revision
            self._patch(app_name, {"spec": {"sources": sources}})
        else:
            self._patch(app_name, {"spec": {"source": {"targetRevision": revision}}})
        return self.refresh(app_name)

    def set_helm_values(self, app_name: str, values: dict[str, Any] | None) -> dict[str, Any]:
        """Inline Helm values of a single-source app: spec.source.helm.valuesObject, replaced whole (None removes
        it). A rollback restores the history entry's source, inline values included."""
        helm = self.get(app_name)["spec"]["source"].get("helm")
        if values is None:
            ops = [{"op": "remove", "path": "/spec/source/helm/valuesObject"}] if "valuesObject" in (helm or {}) else []
        elif helm is None:
            ops = [{"op": "add", "path": "/spec/source/helm", "value": {"valuesObject": values}}]
        else:
            ops = [{"op": "add", "path": "/spec/source/helm/valuesObject", "value": values}]
        if ops:
            self.cluster.kubectl(
                "-n", self.namespace, "patch", APPLICATION_RESOURCE, app_name, "--type", "json", "-p", json.dumps(ops)
            )
        return self.refresh(app_name)

    def set_automated(self, app_name: str, enabled: bool) -> dict[str, Any]:
        """`argocd app set APP --sync-policy automated|none`."""
        automated = {"prune": False, "selfHeal": False} if enabled else None
        self._patch(app_name, {"spec": {"syncPolicy": {"automated": automated}}})
        return self.get(app_name)

    @staticmethod
    def automated_sync_enabled(app: Mapping[str, Any]) -> bool:
        """pkg/apis/application/v1alpha1/types.go SyncPolicy.IsAutomatedSyncEnabled: automated set, and its
        `enabled` not false."""
        automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated")
        return automated is not None and automated.get("enabled", True) is not False

    # --- API server: sync and rollback ------------------------------------------------------------------------

    def sync(
        self,
        app_name: str,
        revision: str | None = None,
        *,
        revisions: list[str] | None = None,
        initiated_by: str = "admin",
        automated: bool = False,
        dry_run: bool = False,
        prune: bool = False,
        resources: list[dict[str, str]] | None = None,
        wait_healthy: bool = True,
        timeout: float = 120,
        check: bool = True,
    ) -> dict[str, Any]:
        """`argocd app sync APP [--revision R] [--dry-run] [--prune] [--resource G:K:N]` as `initiated_by`, or with
        `automated=True` the operation the controller's auto-sync starts (initiatedBy.automated). Runs the whole
        operation, then the refresh the controller requests after it; with `wait_healthy` (not for dry runs or
        failed syncs) waits for Healthy. Returns the Application; raises SyncOperationFailed when `check` and the
        operation ends Failed/Error."""
        app = self.get(app_name)
        spec = app["spec"]
        multi = bool(spec.get("sources"))
        if automated:
            if revision or revisions or dry_run or resources or prune:
                raise ValueError("an automated sync takes the branch head and the automated policy's prune only")
            op = self._auto_sync_operation(app)
        else:
            op = self._cli_sync_operation(
                app,
                revision=revision,
                revisions=revisions,
                initiated_by=initiated_by,
                dry_run=dry_run,
                prune=prune,
                resources=resources,
                multi=multi,
            )
        self._set_operation(app_name, op)
        return self._finish(app_name, wait_healthy and not dry_run, timeout, check)

    def _cli_sync_operation(
        self,
        app: Mapping[str, Any],
        *,
        revision: str | None,
        revisions: list[str] | None,
        initiated_by: str,
        dry_run: bool,
        prune: bool,
        resources: list[dict[str, str]] | None,
        multi: bool,
    ) -> dict[str, Any]:
        """server/application/application.go Sync: the server resolves the revision to a SHA (resolveRevision;
        for multi-source resolveSourceRevisions, one per source), sets `source` to the spec's source (single
        source only) and `sources` to the spec's sources; the CLI's default strategy is `hook`
        (cmd/argocd/commands/app.go, `--strategy` empty); retry is the spec's, else the zero RetryStrategy."""
        spec = app["spec"]
        sync: dict[str, Any] = {}
        if multi:
            wanted = revisions or [revision or s.get("targetRevision", "HEAD") for s in spec["sources"]]
            sync["revisions"] = [
                resolve_revision(s["repoURL"], wanted[i] or s.get("targetRevision", "HEAD"))
                for i, s in enumerate(spec["sources"])
            ]
            sync["sources"] = copy.deepcopy(spec["sources"])
        else:
            source = spec["source"]
            sync["revision"] = resolve_revision(source["repoURL"], revision or source.get("targetRevision", "HEAD"))
            sync["source"] = copy.deepcopy(source)
        if prune:
            sync["prune"] = True
        if dry_run:
            sync["dryRun"] = True
        sync["syncStrategy"] = {"hook": {}}
        if resources:
            sync["resources"] = [dict(r) for r in resources]
        options = (spec.get("syncPolicy") or {}).get("syncOptions")
        if options:
            sync["syncOptions"] = list(options)
        retry = (spec.get("syncPolicy") or {}).get("retry") or {}
        return {"sync": sync, "initiatedBy": {"username": initiated_by}, "retry": retry}

    def _auto_sync_operation(self, app: Mapping[str, Any]) -> dict[str, Any]:
        """controller/appcontroller.go autoSync: revision(s) = the compared (branch head) SHA(s), no source,
        prune from the automated policy, initiatedBy.automated, retry limit 5 unless the spec sets one."""
        spec = app["spec"]
        policy = spec.get("syncPolicy") or {}
        sync: dict[str, Any] = {}
        if spec.get("sources"):
            sync["revisions"] = [
                resolve_revision(s["repoURL"], s.get("targetRevision", "HEAD")) for s in spec["sources"]
            ]
        else:
            src = spec["source"]
            sync["revision"] = resolve_revision(src["repoURL"], src.get("targetRevision", "HEAD"))
        if (policy.get("automated") or {}).get("prune"):
            sync["prune"] = True
        if policy.get("syncOptions"):
            sync["syncOptions"] = list(policy["syncOptions"])
        return {"sync": sync, "initiatedBy": {"automated": True}, "retry": policy.get("retry") or {"limit": 5}}

    def rollback(
        self,
        app_name: str,
        history_id: int | None = None,
        *,
        initiated_by: str = "admin",
        prune: bool = False,
        wait_healthy: bool = True,
        timeout: float = 120,
        check: bool = True,
    ) -> dict[str, Any]:
        """`argocd app rollback APP [ID]`. The CLI picks the history entry (cmd/argocd/commands/app.go
        findRevisionHistory: without an ID the second-newest), then the server (server/application/
        application.go Rollback) refuses while automated sync is enabled and otherwise sets a sync operation to
        that entry's revision(s) AND source(s), with the `apply` strategy (so hooks do not run). The new history
        entry is written by the controller exactly as for any sync."""
        app = self.get(app_name)
        history = (app.get("status") or {}).get("history") or []
        if history_id is None:
            if len(history) < 2:
                raise HistoryNotFound(f"Application '{app_name}' should have at least two successful deployments")
            entry = history[-2]
        else:
            entry = next((h for h in history if h.get("id") == history_id), None)
            if entry is None:
                raise HistoryNotFound(f"Application '{app_name}' does not have deployment id '{history_id}' in history")
        if self.automated_sync_enabled(app):
            raise RollbackRefused()
        sync: dict[str, Any] = {}
        if entry.get("revision"):
            sync["revision"] = entry["revision"]
        if entry.get("revisions"):
            sync["revisions"] = list(entry["revisions"])
        if prune:
            sync["prune"] = True
        options = ((app["spec"].get("syncPolicy") or {}).get("syncOptions")) or []
        if options:
            sync["syncOptions"] = list(options)
        sync["syncStrategy"] = {"apply": {}}
        # `Source: &deploymentInfo.Source`: a pointer to a struct value, so even a multi-source entry's zero
        # source is sent ({"repoURL": ""}).
        sync["source"] = copy.deepcopy(entry.get("source") or {"repoURL": ""})
        if entry.get("sources"):
            sync["sources"] = copy.deepcopy(entry["sources"])
        op = {"sync": sync, "initiatedBy": {"username": initiated_by}, "retry": {}}
        self._set_operation(app_name, op)
        return self._finish(app_name, wait_healthy, timeout, check)

    def _set_operation(self, app_name: str, op: dict[str, Any]) -> None:
        """util/argo/argo.go SetAppOperation: refuse when an operation is set; set `.operation` and clear
        `status.operationState`."""
        if self.get(app_name).get("operation"):
            raise AnotherOperationInProgress()
        self._patch(app_name, {"operation": op, "status": {"operationState": None}})

    def _finish(self, app_name: str, wait_healthy: bool, timeout: float, check: bool) -> dict[str, Any]:
        app = self.process_operation(app_name)
        phase = app["status"]["operationState"]["phase"]
        if phase != "Succeeded":
            if check:
                raise SyncOperationFailed(app)
            return app
        if wait_healthy:
            health = self.refresh_health(app_name, wait=True, timeout=timeout, until=("Healthy", "Degraded"))
            if health["status"] != "Healthy":
                raise ApplicationDegraded(f"application {app_name} is {health['status']} after the sync")
            app = self.get(app_name)
        return app

    # --- controller: the operation ----------------------------------------------------------------------------

    def process_operation(self, app_name: str) -> dict[str, Any]:
        """controller/appcontroller.go processRequestedAppOperation + controller/sync.go SyncAppState, for the
        operation in `.operation`; then the refresh the controller requests when a non-dry-run operation
        completes (CompareWithLatestForceResolve). Returns the Application."""
        app = self.get(app_name)
        op = app.get("operation")
        if not op:
            raise ArgoCDError(f"application {app_name} has no operation to process")
        # NewOperationState: Running, the operation, startedAt; persisted at once (setOperationState).
        state: dict[str, Any] = {"operation": op, "phase": "Running", "startedAt": now()}
        self._patch(app_name, {"status": {"operationState": state}})
        sync_op = op.get("sync") or {}
        state["syncResult"] = self._new_sync_result(app, sync_op)
        comparison = self._sync_app_state(app, sync_op, state)
        if not sync_op.get("dryRun") and not sync_op.get("resources") and state["phase"] == "Succeeded":
            self._persist_revision_history(app_name, state, comparison)
        if not state["syncResult"].get("resources"):
            state["syncResult"].pop("resources", None)  # omitempty
        # setOperationState: a completed operation gets finishedAt, and `.operation` is cleared in the same patch.
        state["finishedAt"] = now()
        self._patch(app_name, {"operation": None, "status": {"operationState": state}})
        if not sync_op.get("dryRun"):
            return self.refresh(app_name)
        return self.get(app_name)

    @staticmethod
    def _new_sync_result(app: Mapping[str, Any], sync_op: Mapping[str, Any]) -> dict[str, Any]:
        """controller/sync.go newSyncOperationResult: the operation's source(s) when it names any, else the
        spec's; the revision as requested (replaced by the resolved SHA once compared)."""
        result: dict[str, Any] = {"revision": sync_op.get("revision", "")}
        if sync_op.get("sources") or sync_op.get("source") is not None:
            result["source"] = copy.deepcopy(sync_op.get("source") or {"repoURL": ""})
            if sync_op.get("sources"):
                result["sources"] = copy.deepcopy(sync_op["sources"])
        else:
            spec = app["spec"]
            result["source"] = copy.deepcopy(spec.get("source") or {"repoURL": ""})
            if spec.get("sources"):
                result["sources"] = copy.deepcopy(spec["sources"])
        if sync_op.get("revisions"):
            result["revisions"] = list(sync_op["revisions"])
        return result

    def _sync_app_state(self, app: dict[str, Any], sync_op: Mapping[str, Any], state: dict[str, Any]) -> Comparison:
        result = state["syncResult"]
        multi = bool(result.get("sources"))
        if multi:
            sources, revisions = result["sources"], list(result.get("revisions") or [])
        else:
            sources, revisions = [result["source"]], [result["revision"]]
        comparison = self.compare(app, sources, revisions, multi, diff=False)
        # "We are now guaranteed to have a concrete commit SHA. Save this in the sync result revision."
        if multi:
            result["revisions"] = comparison.revisions
        else:
            result["revision"] = comparison.revisions[0]
        if comparison.error is not None:
            # A ComparisonError condition stops the operation with phase Error and the formatted conditions
            # (util/argo/argo.go FormatAppConditions: "<type>: <message>").
            state["phase"], state["message"] = "Error", f"ComparisonError: {comparison.error}"
            return comparison
        self._run_tasks(app, sync_op, comparison, state)
        return comparison

    def _run_tasks(
        self, app: Mapping[str, Any], sync_op: Mapping[str, Any], comparison: Comparison, state: dict[str, Any]
    ) -> None:
        """gitops-engine/pkg/sync/sync_context.go Sync for a chart without hooks or waves: a client dry-run of
        every object first (a failure stops the operation before anything is applied), then prune tasks (skipped
        unless prune), then the objects in kind order; the operation succeeds as soon as everything is applied
        ("successfully synced (all tasks run)"), whatever their health becomes."""
        selected = sync_op.get("resources") or []
        dry_run = bool(sync_op.get("dryRun"))
        ssa = "ServerSideApply=true" in (sync_op.get("syncOptions") or [])
        prune = bool(sync_op.get("prune"))

        def wanted(m: Managed) -> bool:
            # controller/sync.go WithResourcesFilter: argo.ContainsSyncResource (group, kind, name; namespace
            # when given) for selective syncs.
            if not selected:
                return True
            return any(
                r.get("group", "") == m.key.group
                and r.get("kind") == m.key.kind
                and r.get("name") == m.key.name
                and (not r.get("namespace") or r["namespace"] == m.key.namespace)
                for r in selected
            )

        tasks = [m for m in comparison.managed if wanted(m)]
        prune_tasks = [m for m in tasks if m.target is None]
        apply_tasks = sorted((m for m in tasks if m.target is not None), key=lambda m: _kind_rank(m.key.kind))
        results: list[dict[str, Any]] = []
        state["syncResult"]["resources"] = results
        if not tasks:
            state["phase"], state["message"] = "Succeeded", "successfully synced (no more tasks)"
            return

        failed = self._client_dry_run([m.target for m in apply_tasks if m.target is not None])
        if failed:
            for m in apply_tasks:
                if m.key in failed:
                    results.append(self._result(m, "SyncFailed", "Failed", failed[m.key]))
            state["phase"], state["message"] = "Failed", "one or more objects failed to apply (dry run)"
            return

        for m in prune_tasks:
            assert m.live is not None
            if not prune:
                results.append(self._result(m, "PruneSkipped", "Succeeded", "ignored (requires pruning)"))
            elif dry_run:
                results.append(self._result(m, "Pruned", "Succeeded", "pruned (dry run)"))
            else:
                self.cluster.kubectl(
                    "-n", m.key.namespace, "delete", self._resource_ref(m.key), "--cascade=foreground", "--wait=false"
                )
                results.append(self._result(m, "Pruned", "Succeeded", "pruned"))

        failures: list[str] = []
        for _, group in _group_by_kind(apply_tasks):
            with ThreadPoolExecutor(max_workers=8) as pool:
                outcomes = list(pool.map(lambda m: self._apply(m.target, dry_run, ssa), group))
            for m, (ok, message) in zip(group, outcomes, strict=True):
                if ok:
                    # operationPhases: a Synced result's hookPhase is Running (it stays so when the operation
                    # completes in one pass, as Argo CD's own syncResults show).
                    results.append(self._result(m, "Synced", "Running", message))
                else:
                    results.append(self._result(m, "SyncFailed", "Failed", message))
                    failures.append(message)
        if failures:
            # setOperationFailed: "<message>, reason: <failed task messages joined by ','>"
            state["phase"] = "Failed"
            state["message"] = "one or more objects failed to apply, reason: " + ",".join(failures)
        else:
            state["phase"], state["message"] = "Succeeded", "successfully synced (all tasks run)"

    @staticmethod
    def _result(m: Managed, status: str, hook_phase: str, message: str) -> dict[str, Any]:
        """pkg/apis/application/v1alpha1/types.go ResourceResult, as controller/sync.go copies it from
        gitops-engine's ResourceSyncResult (syncPhase Sync for a resource that is not a hook)."""
        obj = m.target if m.target is not None else m.live
        assert obj is not None
        _, version = _group_version(obj)
        result: dict[str, Any] = {
            "group": m.key.group,
            "version": version,
            "kind": m.key.kind,
            "namespace": m.key.namespace,
            "name": m.key.name,
            "status": status,
            "message": message,
            "hookPhase": hook_phase,
            "syncPhase": "Sync",
        }
        images = _images(obj)
        if images:
            result["images"] = images
        return result

    def _client_dry_run(self, objects: list[dict[str, Any]]) -> dict[ResourceKey, str]:
        """sync_context.go applyObject(dryRun): always a *client* dry run ("the goal is to validate only the yaml
        correctness of the rendered manifests"). Returns the failures by resource."""
        if not objects:
            return {}
        proc = self.cluster.kubectl("apply", "--dry-run=client", "-f", "-", input=_yaml_stream(objects), check=False)
        if proc.returncode == 0:
            return {}
        failures: dict[ResourceKey, str] = {}
        for obj in objects:
            one = self.cluster.kubectl("apply", "--dry-run=client", "-f", "-", input=json.dumps(obj), check=False)
            if one.returncode != 0:
                failures[ResourceKey.of(obj)] = _clean(one.stderr)
        return failures or {ResourceKey.of(objects[0]): _clean(proc.stderr)}

    def _apply(self, obj: dict[str, Any] | None, dry_run: bool, server_side: bool) -> tuple[bool, str]:
        """One object through kubectl: server-side apply with Argo CD's field manager under
        `ServerSideApply=true`, else client-side apply (kube.ApplyResource in gitops-engine); a dry run is a client
        dry run. The message is kubectl's ("deployment.apps/agents serverside-applied")."""
        assert obj is not None
        args = ["apply", "-f", "-"]
        if dry_run:
            args.append("--dry-run=client")
        elif server_side:
            args += ["--server-side", f"--field-manager={SSA_MANAGER}", "--force-conflicts"]
        proc = self.cluster.kubectl(*args, input=json.dumps(obj), check=False)
        if proc.returncode != 0:
            return False, _clean(proc.stderr)
        return True, proc.stdout.strip()

    def _persist_revision_history(self, app_name: str, state: dict[str, Any], comparison: Comparison) -> None:
        """controller/state.go persistRevisionHistory: id = last id + 1 (0 for the first), the applied revision
        (multi-source: `revisions` and `sources`, no `revision`), deployedAt now, deployStartedAt the operation's
        start, initiatedBy the operation's; truncated to the newest revisionHistoryLimit (RevisionHistories.Trunc);
        written with a merge patch of status.history."""
        app = self.get(app_name)
        history = list((app.get("status") or {}).get("history") or [])
        next_id = history[-1]["id"] + 1 if history else 0
        entry: dict[str, Any] = {"deployedAt": now(), "id": next_id}
        if comparison.multi_source:
            entry["source"] = {"repoURL": ""}  # a struct value: emitted even when zero
            entry["deployStartedAt"] = state["startedAt"]
            entry["sources"] = comparison.sources
            entry["revisions"] = comparison.revisions
        else:
            entry["revision"] = comparison.revisions[0]
            entry["source"] = comparison.sources[0]
            entry["deployStartedAt"] = state["startedAt"]
        entry["initiatedBy"] = copy.deepcopy(state["operation"].get("initiatedBy") or {})
        history.append(entry)
        limit = app["spec"].get("revisionHistoryLimit", DEFAULT_REVISION_HISTORY_LIMIT)
        if len(history) > limit:
            history = history[len(history) - limit :]
        self._patch(app_name, {"status": {"history": history}})

    # --- controller: comparison, refresh and health -----------------------------------------------------------

    def compare(
        self,
        app: Mapping[str, Any],
        sources: list[dict[str, Any]],
        revisions: list[str],
        multi_source: bool,
        *,
        diff: bool = True,
    ) -> Comparison:
        """controller/state.go CompareAppState: resolve each source's revision, render it (GetRepoObjs), find the
        live objects the app manages, reconcile them by key and, with `diff`, compare each pair (a server-side
        dry-run apply through `kubectl diff`, as Argo CD's server-side diff does)."""
        comparison = Comparison(revisions=list(revisions), sources=copy.deepcopy(sources), multi_source=multi_source)
        dest_ns = app["spec"]["destination"]["namespace"]
        targets: dict[ResourceKey, dict[str, Any]] = {}
        try:
            for i, source in enumerate(sources):
                wanted = revisions[i] if i < len(revisions) and revisions[i] else source.get("targetRevision", "HEAD")
                resolved = resolve_revision(source["repoURL"], wanted)
                if i < len(comparison.revisions):
                    comparison.revisions[i] = resolved
                else:
                    comparison.revisions.append(resolved)
            targets = self._render_sources(app, sources, comparison.revisions, comparison)
        except ArgoCDError as exc:
            # "do best effort loading live and target state": with no target, every live object the app tracks
            # is reconciled as extra (requiresPruning) with status Unknown, and the app's sync status is Unknown.
            comparison.error = f"Failed to load target state: {exc.message}"
        live = self._managed_live_objects(app["metadata"]["name"], dest_ns, targets)
        keys = sorted({*targets, *live})
        comparison.managed = [Managed(k, targets.get(k), live.get(k)) for k in keys]
        if diff:
            self._statuses(comparison, app)
        return comparison

    def _render_sources(
        self, app: Mapping[str, Any], sources: list[dict[str, Any]], revisions: list[str], comparison: Comparison
    ) -> dict[ResourceKey, dict[str, Any]]:
        refs = {s["ref"]: (s, revisions[i]) for i, s in enumerate(sources) if s.get("ref")}
        objects: dict[ResourceKey, dict[str, Any]] = {}
        for i, source in enumerate(sources):
            # reposerver/repository/repository.go GenerateManifest: a ref-only source renders nothing; its
            # manifest response has no source type.
            if source.get("ref") and not source.get("path") and not source.get("chart"):
                comparison.source_types.append("")
                continue
            try:
                rendered = self._helm_template(app, source, revisions[i], refs)
            except ArgoCDError as exc:
                raise ArgoCDError(
                    f"failed to generate manifest for source {i + 1} of {len(sources)}: "
                    f"rpc error: code = Unknown desc = {exc.message}"
                ) from exc
            comparison.source_types.append("Helm")
            for obj in rendered:  # controller/state.go NormalizeTargetObjects: the last duplicate wins
                objects[ResourceKey.of(obj)] = obj
        return objects

    def _helm_template(
        self,
        app: Mapping[str, Any],
        source: Mapping[str, Any],
        revision: str,
        refs: Mapping[str, tuple[dict[str, Any], str]],
    ) -> list[dict[str, Any]]:
        """reposerver/repository/repository.go helmTemplate: `helm template . --name-template <app name>
        --namespace <dest> --kube-version <cluster> --values <valueFiles...> [--values <helm.values>] --set ...
        --include-crds`, in the checkout; value files resolve against the app path and must stay inside the repo
        (util/app/path ResolveValueFilePathOrUrl); `$<ref>/...` reads the ref source's checkout at its revision;
        then the repo-server stamps the tracking annotation/label on every object."""
        name = app["metadata"]["name"]
        dest_ns = app["spec"]["destination"]["namespace"]
        helm = source.get("helm") or {}
        with _checkout(source["repoURL"], revision) as root, tempfile.TemporaryDirectory() as scratch:
            app_path = (root / source.get("path", "")).resolve()
            if not app_path.is_dir():
                raise ArgoCDError(f"{source.get('path')}: app path does not exist")
            release = helm.get("releaseName") or name
            args = ["template", ".", "--name-template", release, "--namespace", helm.get("namespace") or dest_ns]
            args += ["--kube-version", self._cluster_version()]
            for value_file in helm.get("valueFiles") or ():
                path = self._value_file(value_file, root, app_path, refs, Path(scratch))
                if not path.exists() and helm.get("ignoreMissingValueFiles"):
                    continue
                args += ["--values", str(path)]
            extra = helm.get("valuesObject")
            if extra is None and helm.get("values"):
                extra = yaml.safe_load(helm["values"])
            if extra:
                extra_file = Path(scratch) / "extra-values.yaml"
                extra_file.write_text(yaml.safe_dump(extra))
                args += ["--values", str(extra_file)]
            for p in helm.get("parameters") or ():
                args += ["--set-string" if p.get("forceString") else "--set", f"{p['name']}={p.get('value', '')}"]
            if helm.get("skipTests"):
                args.append("--skip-tests")
            if not helm.get("skipCrds"):
                args.append("--include-crds")
            proc = subprocess.run(
                [find_tool("helm"), *args], cwd=app_path, capture_output=True, text=True, timeout=120, check=False
            )
            if proc.returncode != 0:
                shown = " ".join(args)
                raise ArgoCDError(f"`helm {shown}` failed exit status {proc.returncode}: {proc.stderr.strip()}")
        objects = [o for o in yaml.safe_load_all(proc.stdout) if isinstance(o, dict) and o.get("kind")]
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            if self._namespaced(obj) and not meta.get("namespace"):
                meta["namespace"] = dest_ns
            self._set_tracking(obj, name, dest_ns)
        return objects

    @staticmethod
    def _value_file(
        value_file: str, root: Path, app_path: Path, refs: Mapping[str, tuple[dict[str, Any], str]], scratch: Path
    ) -> Path:
        if value_file.startswith("$"):
            ref, _, rest = value_file[1:].partition("/")
            if ref not in refs:
                raise ArgoCDError(f"source referenced {value_file!r}, but no source has a 'ref' field of {ref!r}")
            ref_source, ref_revision = refs[ref]
            target = scratch / f"ref-{ref}"
            if not target.exists():
                with _checkout(ref_source["repoURL"], ref_revision) as ref_root:
                    shutil.copytree(ref_root, target)
            return target / rest
        path = (app_path / value_file).resolve()
        if not path.is_relative_to(root.resolve()):
            raise ArgoCDError(f"value file {value_file!r} resolved to outside repository root")
        return path

    def _set_tracking(self, obj: dict[str, Any], app_name: str, dest_ns: str) -> None:
        """util/argo/resource_tracking.go SetAppInstance: the annotation `<app>:<group>/<kind>:<namespace>/<name>`
        (the object's namespace, else the destination's), and/or the instance label."""
        meta = obj["metadata"]
        group, _ = _group_version(obj)
        if self.tracking_method in ("annotation", "annotation+label"):
            value = f"{app_name}:{group}/{obj['kind']}:{meta.get('namespace') or dest_ns}/{meta['name']}"
            meta.setdefault("annotations", {})[TRACKING_ANNOTATION] = value
        if self.tracking_method in ("label", "annotation+label"):
            meta.setdefault("labels", {})[INSTANCE_LABEL] = app_name[:63]

    def _app_name_of(self, obj: Mapping[str, Any]) -> str:
        """util/argo/resource_tracking.go GetAppName: the instance label, or the app part of the tracking-id
        annotation (empty when it does not parse), by the configured tracking method."""
        meta = obj.get("metadata") or {}
        if self.tracking_method == "label":
            return str((meta.get("labels") or {}).get(INSTANCE_LABEL, ""))
        parts = str((meta.get("annotations") or {}).get(TRACKING_ANNOTATION, "")).split(":", 2)
        return parts[0] if len(parts) == 3 else ""

    def _self_referenced(self, live: Mapping[str, Any]) -> bool:
        """controller/state.go isSelfReferencedObj for a live object without a target: its tracking-id must
        describe this very object (not one it was copied from); always true under label tracking."""
        if self.tracking_method == "label":
            return True
        parts = str(((live.get("metadata") or {}).get("annotations") or {}).get(TRACKING_ANNOTATION, "")).split(":", 2)
        if len(parts) != 3:
            return True
        group, _, kind = parts[1].partition("/")
        namespace, _, name = parts[2].partition("/")
        key = ResourceKey.of(live)
        return (group, kind, name) == (key.group, key.kind, key.name) and key.namespace in (namespace, "")

    def _managed_live_objects(
        self, app_name: str, namespace: str, targets: Mapping[ResourceKey, dict[str, Any]]
    ) -> dict[ResourceKey, dict[str, Any]]:
        """The cluster cache's GetManagedLiveObjs (gitops-engine/pkg/cache/cluster.go): every top-level object
        (no ownerReferences) the app tracks, plus live objects at the targets' keys that lack the tracking."""
        for attempt in range(2):
            kinds = [r for r in self._api_resources().values() if r["namespaced"] and r["kind"] not in UNTRACKED_KINDS]
            names = ",".join(sorted({r["ref"] for r in kinds}))
            proc = self.cluster.kubectl("-n", namespace, "get", names, "-o", "json", check=False)
            if proc.returncode == 0:
                break
            if attempt == 0:
                self._api = None  # an API went away (a CRD deleted meanwhile): rediscover, as the cache would
            else:
                raise AssertionError(f"listing the live objects of {namespace} failed:\n{proc.stderr}")
        items = json.loads(proc.stdout).get("items", [])
        live: dict[ResourceKey, dict[str, Any]] = {}
        for obj in items:
            key = ResourceKey.of(obj)
            if key in targets or (not obj["metadata"].get("ownerReferences") and self._app_name_of(obj) == app_name):
                live[key] = obj
        return live

    def _statuses(self, comparison: Comparison, app: Mapping[str, Any]) -> None:
        """controller/state.go CompareAppState: a ResourceStatus per managed resource (requiresPruning when only
        live; OutOfSync when different, missing or extra), the app's sync code, and controller/health.go
        setApplicationHealth."""
        ssa = "ServerSideApply=true" in (((app["spec"].get("syncPolicy") or {}).get("syncOptions")) or [])
        pairs = [m for m in comparison.managed if m.target is not None and m.live is not None]
        if comparison.error is not None:
            pairs = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            verdicts = list(pool.map(lambda m: self._modified(m.target, ssa), pairs))
        modified = dict(zip([m.key for m in pairs], verdicts, strict=True))
        sync_code = "Unknown" if comparison.error is not None else "Synced"
        resources: list[dict[str, Any]] = []
        for m in comparison.managed:
            obj = m.live if m.live is not None else m.target
            assert obj is not None
            group, version = _group_version(obj)
            status: dict[str, Any] = {}
            if group:
                status["group"] = group  # ResourceStatus fields are all omitempty
            status.update({"version": version, "kind": m.key.kind, "namespace": m.key.namespace, "name": m.key.name})
            self_referenced = m.live is None or m.target is not None or self._self_referenced(m.live)
            if comparison.error is not None:
                status["status"] = "Unknown"  # "we can't say anything about the status"
            elif not self_referenced:
                pass  # tracking copied from another object: no sync status, no effect on the app's
            elif m.target is None or m.live is None:
                status["status"] = "OutOfSync"  # extra (requires pruning) or missing
            else:
                status["status"] = {False: "Synced", True: "OutOfSync"}.get(modified.get(m.key), "Unknown")
            if status.get("status") == "OutOfSync":
                sync_code = "OutOfSync"
            if m.target is None and m.live is not None and self_referenced:
                status["requiresPruning"] = True
            resources.append(status)
        comparison.resources = resources
        comparison.sync_code = sync_code
        comparison.health = self._app_health(comparison)

    def _modified(self, target: dict[str, Any] | None, server_side: bool) -> bool | None:
        """Whether applying the desired object would change the live one: `kubectl diff` (exit 0 same, 1
        different), server-side with Argo CD's field manager when the app syncs server-side (its server-side
        diff), else kubectl's client-side three-way diff. None when the diff itself fails."""
        args = ["diff", "-f", "-"]
        if server_side:
            args += ["--server-side", f"--field-manager={SSA_MANAGER}", "--force-conflicts"]
        proc = self.cluster.kubectl(*args, input=json.dumps(target), check=False)
        return {0: False, 1: True}.get(proc.returncode)

    def _app_health(self, comparison: Comparison) -> str:
        """controller/health.go setApplicationHealth: the worst resource health, starting from Healthy; resources
        without a health check and missing resources do not count; no live resource at all is Missing."""
        status, any_live, any_resource = "Healthy", False, False
        for m in comparison.managed:
            any_resource = True
            if m.live is None:
                continue
            any_live = True
            health = resource_health(m.live)
            if health is not None and _worse(status, health["status"]):
                status = health["status"]
        if any_resource and not any_live and _worse(status, "Missing"):
            status = "Missing"
        return status

    def refresh(self, app_name: str) -> dict[str, Any]:
        """controller/appcontroller.go processAppRefreshQueueItem after a spec change or a completed operation:
        compare the live state with the spec's sources at their targetRevision (the branch head), then persist
        status.sync, health, resources (sorted by group/kind/namespace/name), summary, sourceType(s),
        reconciledAt, controllerNamespace and the ComparisonError condition."""
        app = self.get(app_name)
        spec = app["spec"]
        multi = bool(spec.get("sources"))
        sources = spec["sources"] if multi else [spec["source"]]
        revisions = [s.get("targetRevision", "HEAD") for s in sources]
        comparison = self.compare(app, sources, revisions, multi)
        status = app.get("status") or {}
        timestamp = now()
        sync: dict[str, Any] = {
            "comparedTo": {**comparison.compared_to, "destination": spec["destination"]},
            "status": comparison.sync_code,
        }
        if spec.get("ignoreDifferences"):
            sync["comparedTo"]["ignoreDifferences"] = spec["ignoreDifferences"]
        if multi:
            sync["revisions"] = comparison.revisions
        else:
            sync["revision"] = comparison.revisions[0]
        patch: dict[str, Any] = {
            "sync": sync,
            "reconciledAt": timestamp,
            "controllerNamespace": self.namespace,
            "resourceHealthSource": "inline" if self.persist_resource_health else "appTree",
        }
        if comparison.error is not None:
            # The ComparisonError condition (SetConditions keeps lastTransitionTime while the message holds).
            old = next((c for c in status.get("conditions") or () if c.get("type") == "ComparisonError"), None)
            message = comparison.error
            when = old["lastTransitionTime"] if old and old.get("message") == message else timestamp
            patch["conditions"] = [{"type": "ComparisonError", "message": message, "lastTransitionTime": when}]
        else:
            patch["conditions"] = None
        patch["resources"] = self._with_resource_health(comparison)
        patch["health"] = self._health_status(status, comparison.health, timestamp)
        patch["summary"] = {"images": self._tree_images(comparison) or None}
        # No manifests when the comparison failed: no source type (omitempty removes it from status).
        types = comparison.source_types if comparison.error is None else []
        if multi:
            patch["sourceTypes"] = types or None
        else:
            patch["sourceType"] = types[0] if types else None
        return self._patch(app_name, {"status": patch})

    def _with_resource_health(self, comparison: Comparison) -> list[dict[str, Any]]:
        """Per-resource health only with controller.resource.health.persist=true (controller/health.go)."""
        out = []
        for m, status in zip(comparison.managed, comparison.resources, strict=True):
            res = dict(status)
            if self.persist_resource_health:
                health = {"status": "Missing"} if m.live is None else resource_health(m.live)
                if health is not None:
                    res["health"] = health
            out.append(res)
        return sorted(out, key=lambda r: "/".join([r.get("group", ""), r["kind"], r["namespace"], r["name"]]))

    @staticmethod
    def _health_status(status: Mapping[str, Any], code: str, timestamp: str) -> dict[str, Any]:
        """The app's HealthStatus: status, and lastTransitionTime when the status changes."""
        old = status.get("health") or {}
        if old.get("status") == code and old.get("lastTransitionTime"):
            return {"status": code, "lastTransitionTime": old["lastTransitionTime"]}
        return {"status": code, "lastTransitionTime": timestamp}

    def _tree_images(self, comparison: Comparison) -> list[str]:
        """ApplicationTree.GetSummary: the literal `image` of every pod in the resource tree (Deployment ->
        ReplicaSet -> Pod, old ReplicaSets' pods included), sorted, without duplicates."""
        deployments = {m.key.name for m in comparison.managed if m.live is not None and m.key.kind == "Deployment"}
        namespaces = {m.key.namespace for m in comparison.managed if m.live is not None}
        images: set[str] = set()
        for namespace in namespaces:
            found = self.cluster.get("-n", namespace, "replicasets.apps,pods")["items"]
            replicasets = {
                o["metadata"]["name"]
                for o in found
                if o["kind"] == "ReplicaSet"
                and any(r.get("kind") == "Deployment" and r.get("name") in deployments for r in _owners(o))
            }
            for pod in (o for o in found if o["kind"] == "Pod"):
                if any(r.get("kind") == "ReplicaSet" and r.get("name") in replicasets for r in _owners(pod)):
                    images.update(c["image"] for c in pod["spec"].get("containers", ()))
        return sorted(images)

    def refresh_health(
        self,
        app_name: str,
        *,
        wait: bool = False,
        timeout: float = 120,
        until: Iterable[str] = ("Healthy", "Degraded"),
    ) -> dict[str, Any]:
        """Re-assess health from the live objects of the app's resources (the controller re-evaluates health on
        every watch event of a managed resource), persist status.health and summary, and return status.health.
        With `wait`, poll until the status is one of `until` (HealthTimeout after `timeout` seconds)."""
        awaited = tuple(until)
        deadline = time.monotonic() + timeout
        while True:
            health = self._reassess_health(app_name)
            if not wait or health["status"] in awaited:
                return health
            if time.monotonic() > deadline:
                raise HealthTimeout(f"application {app_name} is {health['status']} after {timeout}s, not {awaited}")
            time.sleep(0.5)

    def _reassess_health(self, app_name: str) -> dict[str, Any]:
        app = self.get(app_name)
        status = app.get("status") or {}
        keys = [
            ResourceKey(r.get("group", ""), r["kind"], r.get("namespace", ""), r["name"])
            for r in status.get("resources") or ()
        ]
        live = self._get_live(keys)
        comparison = Comparison(revisions=[], sources=[], multi_source=False)
        comparison.managed = [Managed(k, None, live.get(k)) for k in keys]
        code = self._app_health(comparison)
        patch: dict[str, Any] = {
            "health": self._health_status(status, code, now()),
            "summary": {"images": self._tree_images(comparison) or None},
        }
        if self.persist_resource_health:
            resources = copy.deepcopy(status.get("resources") or [])
            for res, m in zip(resources, comparison.managed, strict=True):
                health = {"status": "Missing"} if m.live is None else resource_health(m.live)
                if health is not None:
                    res["health"] = health
            patch["resources"] = resources
        app = self._patch(app_name, {"status": patch})
        result: dict[str, Any] = app["status"]["health"]
        return result

    def _get_live(self, keys: list[ResourceKey]) -> dict[ResourceKey, dict[str, Any]]:
        live: dict[ResourceKey, dict[str, Any]] = {}
        for namespace in {k.namespace for k in keys}:
            refs = [self._resource_ref(k) for k in keys if k.namespace == namespace]
            proc = self.cluster.kubectl("-n", namespace, "get", *refs, "-o", "json", "--ignore-not-found", check=False)
            if not proc.stdout.strip():
                continue
            data = json.loads(proc.stdout)
            for obj in data.get("items", [data]) if data.get("kind", "").endswith("List") else [data]:
                live[ResourceKey.of(obj)] = obj
        return live

    # --- discovery -------------------------------------------------------------------------------------------

    def _api_resources(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(group, kind) -> plural, namespaced, listable: what the cluster cache learns from discovery."""
        if self._api is None:
            api: dict[tuple[str, str], dict[str, Any]] = {}
            out = self.cluster.kubectl("api-resources", "--verbs=list", "--no-headers").stdout
            for line in out.splitlines():
                cols = line.split()
                if len(cols) < 4:
                    continue
                plural, (api_version, namespaced, kind) = cols[0], cols[-3:]
                group = api_version.rpartition("/")[0]
                ref = f"{plural}.{group}" if group else plural
                api[(group, kind)] = {"ref": ref, "namespaced": namespaced == "true", "kind": kind}
            self._api = api
        return self._api

    def _resource_ref(self, key: ResourceKey) -> str:
        known = self._api_resources().get((key.group, key.kind))
        kind = known["ref"] if known else (f"{key.kind.lower()}.{key.group}" if key.group else key.kind.lower())
        return f"{kind}/{key.name}"

    def _namespaced(self, obj: Mapping[str, Any]) -> bool:
        group, _ = _group_version(obj)
        known = self._api_resources().get((group, str(obj.get("kind"))))
        return True if known is None else bool(known["namespaced"])  # kube.IsNamespacedOrUnknown

    def _cluster_version(self) -> str:
        if self._kube_version is None:
            info = json.loads(self.cluster.kubectl("version", "-o", "json").stdout)
            self._kube_version = str(info["serverVersion"]["gitVersion"]).split("+")[0].split("-")[0]
        return self._kube_version

    # --- the controller's reconciliation loop, one turn ------------------------------------------------------

    def reconcile(self, app_name: str, *, wait_healthy: bool = True, timeout: float = 120) -> dict[str, Any]:
        """One refresh, then controller/appcontroller.go autoSync: with automated sync enabled, no operation
        running and the app OutOfSync, start an automated sync unless the last operation already synced this
        revision with this source (alreadyAttemptedSync; selfHeal is not simulated)."""
        app = self.refresh(app_name)
        if not self.automated_sync_enabled(app) or app.get("operation"):
            return app
        status = app.get("status") or {}
        if (status.get("sync") or {}).get("status") != "OutOfSync":
            return app
        result = (status.get("operationState") or {}).get("syncResult") or {}
        spec = app["spec"]
        desired = status["sync"].get("revisions") if spec.get("sources") else status["sync"].get("revision")
        attempted = result.get("revisions") if spec.get("sources") else result.get("revision")
        if attempted == desired and _same_source(spec, result):
            return app
        return self.sync(app_name, automated=True, wait_healthy=wait_healthy, timeout=timeout, check=False)

    def delete_application(self, app_name: str) -> None:
        """Delete the Application object only (no cascade: the double adds no resources-finalizer)."""
        self.cluster.kubectl("-n", self.namespace, "delete", APPLICATION_RESOURCE, app_name, "--ignore-not-found")


def _same_source(spec: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
    """alreadyAttemptedSync compares the sources ignoring targetRevision."""

    def strip(s: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (s or {}).items() if k != "targetRevision"}

    if spec.get("sources"):
        return [strip(s) for s in spec["sources"]] == [strip(s) for s in result.get("sources") or []]
    return strip(spec.get("source")) == strip(result.get("source"))


def _owners(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("ownerReferences") or [])


def _group_by_kind(tasks: list[Managed]) -> Iterator[tuple[str, list[Managed]]]:
    """sync_context.go runTasks: consecutive tasks of one kind are applied together (in parallel)."""
    group: list[Managed] = []
    for task in tasks:
        if group and group[0].key.kind != task.key.kind:
            yield group[0].key.kind, group
            group = []
        group.append(task)
    if group:
        yield group[0].key.kind, group


def _yaml_stream(objects: Iterable[Mapping[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objects)
