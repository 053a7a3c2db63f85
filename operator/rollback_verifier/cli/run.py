"""`rollback-verifier run`: the operator."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rollback_verifier.api.settings import SettingsError, load_settings
from rollback_verifier.errors import EXIT_CODES_HELP, ClusterError, UsageError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", help="run the operator (reconciles RollbackVerifications)")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--namespace", "-n", action="append", metavar="NS", help="watch only this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    p.add_argument("--settings", type=Path, help="operator settings file (YAML); default: built-in defaults")
    p.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics, /healthz, /readyz")
    p.add_argument(
        "--metrics-address",
        default="",
        metavar="ADDRESS",
        help="address /metrics, /healthz and /readyz bind to (default: every address)",
    )
    p.add_argument("--cache-dir", type=Path, default=Path("/var/cache/rollback-verifier"), help="git cache folder")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current context)")
    p.epilog = (
        EXIT_CODES_HELP + ". At start the operator exits 3 when it has no usable kubeconfig or cannot reach the "
        "cluster (a crash loop says more than a silent retry)"
    )
    p.set_defaults(handler=_run)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf's per-object chatter ("Handler succeeded") is noise at info level.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, root.level))


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.settings)
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc
    if not 0 < args.metrics_port < 65536:
        raise UsageError(f"--metrics-port {args.metrics_port} is not a port number")
    if args.metrics_address:
        try:
            ipaddress.ip_address(args.metrics_address)
        except ValueError:
            raise UsageError(f"--metrics-address {args.metrics_address!r} is not an IP address") from None
    _configure_logging(args.log_format, args.log_level)
    api_client = _connect(args.kubeconfig, args.context)

    import kopf  # imported here: `crds` and `check` never pay for kopf

    from rollback_verifier.controller import handlers

    options = handlers.RunOptions(
        settings=settings,
        api_client=api_client,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        cache_dir=args.cache_dir,
    )
    kopf.run(
        standalone=True,
        clusterwide=bool(args.all_namespaces),
        namespaces=args.namespace or (),
        memo=kopf.Memo(options=options),
    )
    return 0


def _connect(kubeconfig: str | None, context: str | None) -> Any:
    """The API client of the given (or the usual) configuration, once the cluster answered: without a
    kubeconfig or a reachable cluster the operator exits with one line instead of retrying silently."""
    from rollback_verifier.controller.kube import Kube, KubeconfigError, cluster_problem, load_client_config

    try:
        api_client = load_client_config(kubeconfig, context)
    except KubeconfigError as exc:
        raise ClusterError(f"{exc}; in a pod the ServiceAccount token is used, elsewhere pass --kubeconfig") from None
    try:
        Kube(api_client).server_version()
    except Exception as exc:
        problem = cluster_problem(exc, str(api_client.configuration.host))
        if problem is None:
            raise
        raise ClusterError(problem) from None
    return api_client
