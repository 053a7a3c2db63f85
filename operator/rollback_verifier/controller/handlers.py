"""Kopf handlers: translate watch events into calls of the runner (and, later, detection).

Importing this module registers the handlers with kopf's default registry; `cli/run.py`
imports it and starts kopf. Nothing here decides anything: the core does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rollback_verifier import GROUP, PLURAL, VERSION
from rollback_verifier.api.settings import Settings
from rollback_verifier.controller.applications import application_watcher
from rollback_verifier.controller.clusters import Clusters
from rollback_verifier.controller.detector import Detector
from rollback_verifier.controller.informer import Informer
from rollback_verifier.controller.kube import Kube, load_client_config
from rollback_verifier.controller.metrics import Metrics
from rollback_verifier.controller.runner import ApiEvents, VerificationRunner
from rollback_verifier.controller.target_caches import TargetCaches
from rollback_verifier.controller.workers import Workers
from rollback_verifier.core.trust import destination_policy, git_protocols, namespace_policy, repository_policy
from rollback_verifier.values.git import GitValuesReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """What `rollback-verifier run` was told: handed to kopf in its memo (`memo.options`)."""

    settings: Settings = field(default_factory=Settings)
    api_client: Any = None  # kubernetes.client.ApiClient of --kubeconfig/--context (None: the usual lookup)
    metrics_port: int = 8080
    metrics_address: str = ""  # "" = every address
    cache_dir: Path = Path("/var/cache/rollback-verifier")


def _options(memo: kopf.Memo) -> RunOptions:
    options = memo.get("options")
    return options if isinstance(options, RunOptions) else RunOptions()


def _api_client(memo: kopf.Memo) -> Any:
    """The client of the options, else of the usual lookup: loaded once, kept in the memo."""
    if memo.get("api_client") is None:
        memo.api_client = _options(memo).api_client or load_client_config()
    return memo.api_client


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the cluster `run` connected to (--kubeconfig/--context), not to whatever its own
    lookup finds. The same fields as kopf's login_via_client, read from our client's configuration."""
    cfg = _api_client(memo).configuration
    # Read through the hook: exec/auth-provider and in-cluster tokens refresh there.
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    scheme, _space, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Watch streams end server-side after server_timeout and client-side after client_timeout:
    # without both, an idle stream can stall silently forever (kopf issues 585, 847).
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    # One replica (Recreate): no peering objects to create or RBAC to grant for them.
    settings.peering.standalone = True
    # Namespaces are exact names and our CRD is installed before the operator starts, so kopf need not
    # list namespaces and CRDs cluster-wide: the namespaced mode then works with Roles only.
    settings.scanning.disabled = True
    # No change-detecting handlers are used (state lives in status, written by the runner), so kopf
    # stores nothing on objects; should that change, it goes to status, not to annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events: the runner posts its own with kopf.event (Started, verdicts); log lines become Events
    # only at WARNING and above, so routine logging never floods the namespace with Events.
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8

    kube = Kube(_api_client(memo))
    metrics = Metrics()
    cfg = _options(memo)
    apps = application_watcher(kube, cfg.settings.argocdNamespace)
    loop = asyncio.get_running_loop()
    # Tasks started from the watch threads run in kopf's context, so that they can post Events.
    context = contextvars.copy_context()
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    reader = GitValuesReader(cfg.cache_dir / "git", protocols=git_protocols(cfg.settings))
    workers = Workers(budget_seconds=reader.timeout_seconds)
    runner = VerificationRunner(
        fresh=kube,
        statuses=kube,
        events=ApiEvents(kube.post_event_once),
        secrets=kube,
        metrics=metrics,
        reader=reader,
        # Only Argo CD's namespace is watched (and granted): an Application elsewhere reads as not found.
        get_application=lambda ns, name: apps.get(name) if ns == apps.namespace else None,
        namespaces=namespace_policy(cfg.settings),
        repositories=repository_policy(cfg.settings, _api_server_hosts(kube.api_client)),
        workers=workers,
        destinations=destination_policy(cfg.settings),
    )

    def on_loop(call: Callable[[], None]) -> None:  # from an informer's thread
        loop.call_soon_threadsafe(call, context=context)

    caches = TargetCaches(kube, runner.nudge, schedule=on_loop)
    runner.caches = caches
    runner.clusters = Clusters(
        kube,
        caches,
        lambda cluster, namespace, deployment: runner.nudge(namespace, deployment, cluster),
        argocd_namespace=cfg.settings.argocdNamespace,
        files_root=cfg.cache_dir / "clusters",
        schedule=on_loop,  # destination caches coalesce their changes onto the loop as the own ones do
    )
    detector = Detector(kube, metrics, reader, cfg.settings, workers)
    watched = [a.name for a in cfg.settings.detection.applications] if cfg.settings.detection.enabled else []
    metrics.preset_detections(watched)
    metrics.preset_durations(["", *watched])

    def on_application(kind: str, name: str, app: dict[str, Any] | None) -> None:  # in the watch thread
        loop.call_soon_threadsafe(runner.nudge_application, apps.namespace, name, context=context)
        if app is not None:
            loop.call_soon_threadsafe(_spawn, detector.on_application(app), context=context)

    apps.listener = on_application
    apps.start()
    await asyncio.to_thread(apps.settled.wait, 30)
    detector.check_configured(apps.names(), apps.namespace)
    memo.kube, memo.metrics, memo.runner, memo.apps, memo.detector = kube, metrics, runner, apps, detector
    memo.workers = workers
    memo.http = await _serve_http(metrics, cfg.metrics_address, cfg.metrics_port, lambda: _not_ready(apps, caches))


def _api_server_hosts(api_client: Any) -> frozenset[str]:
    """The API server's host as this operator reaches it: a local service, never a repository."""
    hosts = {os.environ.get("KUBERNETES_SERVICE_HOST", "")}
    hosts.add(urlsplit(str(api_client.configuration.host or "")).hostname or "")
    return frozenset(h for h in hosts if h)


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine in the background, keeping a reference so that it is not garbage-collected."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _not_ready(apps: Informer[dict[str, Any]], caches: TargetCaches) -> list[str]:
    """What is not synced: the Applications (unless Argo CD is not installed) and every target cache."""
    problems = caches.not_synced()
    if not apps.synced.is_set() and not (apps.error or "").startswith("HTTP 404"):
        problems.insert(0, f"{apps.what}: {apps.error or 'listing'}")
    return problems


async def _serve_http(metrics: Metrics, address: str, port: int, not_ready: Callable[[], list[str]]) -> web.AppRunner:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(_: web.Request) -> web.Response:
        problems = not_ready()
        if problems:
            return web.Response(status=503, text="caches not synced:\n" + "\n".join(problems) + "\n")
        return web.Response(text="ok: caches synced\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", ok)  # served by the event loop itself: a stuck loop fails it
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Unauthenticated by design (aggregate counts, no names); --metrics-address narrows who can reach it.
    await web.TCPSite(runner, address or None, port).start()
    log.info("metrics on %s:%s/metrics, liveness on /healthz", address or "*", port)
    return runner


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    memo.apps.stop()
    memo.workers.shutdown()
    await memo.http.cleanup()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def verification_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.metrics.objects.observe(type, body)
    memo.runner.observe(type, dict(body))
