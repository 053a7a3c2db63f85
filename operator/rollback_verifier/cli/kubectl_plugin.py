"""`kubectl rbv`: a thin kubectl plugin (installed as `kubectl-rbv` on PATH) for RollbackVerifications.

    kubectl rbv list [-n NS | -A]             the verifications, newest last
    kubectl rbv describe NAME [-n NS]         verdict, targets (expected vs running), conditions, Events
    kubectl rbv verify-again NAME [-n NS]     a new verification with NAME's spec (a verdict is final)

Only reads and one create, through the same client and exit codes as `rollback-verifier`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rollback_verifier import GROUP, KIND, LABEL_PREFIX, VERSION
from rollback_verifier.cli.main import run_command
from rollback_verifier.core.plain import parse_time
from rollback_verifier.errors import EXIT_CODES_HELP, EXIT_OK, UsageError

APPLICATION_LABEL = f"{LABEL_PREFIX}application"
AGAIN_ANNOTATION = f"{LABEL_PREFIX}verify-again-of"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl rbv", description="RollbackVerifications: list, describe, verify again.", epilog=EXIT_CODES_HELP
    )
    _connection_options(parser)  # before the subcommand...
    parser.set_defaults(kubeconfig=None, context=None, namespace=None)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common)  # ...or after it, as kubectl takes them
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", aliases=["ls"], parents=[common], help="list verifications")
    listing.add_argument("--all-namespaces", "-A", action="store_true")
    listing.set_defaults(handler=_list)
    describe = sub.add_parser(
        "describe", parents=[common], help="the verdict, the targets, the conditions and the Events"
    )
    describe.add_argument("name")
    describe.set_defaults(handler=_describe)
    again = sub.add_parser(
        "verify-again", parents=[common], help="create a new verification with the spec of an old one"
    )
    again.add_argument("name")
    again.set_defaults(handler=_verify_again)
    return parser


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """kubectl's connection flags; SUPPRESS so that the subcommand's copy does not reset the main one's."""
    quiet = argparse.SUPPRESS
    parser.add_argument("--kubeconfig", default=quiet, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", default=quiet, help="kubeconfig context (default: the current context)")
    parser.add_argument("--namespace", "-n", default=quiet, help="namespace (default: the context's, else default)")


def _age(timestamp: str | None, now: float) -> str:
    if not timestamp:
        return "-"
    seconds = int(now - parse_time(timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def columns(rows: Sequence[Sequence[str]]) -> str:
    """kubectl's plain table: columns padded to the widest cell, three spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows) + "\n"


def list_table(items: Iterable[Mapping[str, Any]], now: float, with_namespace: bool) -> str:
    rows: list[list[str]] = [
        [*(["NAMESPACE"] if with_namespace else []), "NAME", "APPLICATION", "REVISION", "PHASE", "REASON", "AGE"]
    ]
    for obj in sorted(items, key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"])):
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        rows.append(
            [
                *([meta.get("namespace", "")] if with_namespace else []),
                meta["name"],
                (spec.get("application") or {}).get("name") or "-",
                status.get("shortRevision") or "-",
                status.get("phase") or "Pending",
                status.get("reason") or "-",
                _age(meta.get("creationTimestamp"), now),
            ]
        )
    return columns(rows)


def describe_text(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> str:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    app = spec.get("application") or {}
    reason = f" ({status['reason']})" if status.get("reason") else ""
    lines = [
        f"Name:         {meta['name']}",
        f"Namespace:    {meta.get('namespace', '')}",
        f"Application:  {app['namespace'] + '/' + app['name'] if app else '-'}",
        f"Revision:     {status.get('revision') or spec.get('revision') or '-'}",
        f"From:         {status.get('fromRevision') or spec.get('fromRevision') or '-'}",
        f"Detected by:  {status.get('detectedBy') or '-'}",
        f"Phase:        {status.get('phase') or 'Pending'}{reason}",
        f"Message:      {status.get('message') or '-'}",
        f"Started:      {status.get('startedAt') or '-'}",
        f"Completed:    {status.get('completedAt') or '-'}"
        + (f" ({status['durationSeconds']}s)" if status.get("durationSeconds") is not None else ""),
        "",
        "Targets:",
    ]
    targets = status.get("targets") or []
    if targets:
        rows = [["DEPLOYMENT", "READY", "CONTAINER", "EXPECTED", "RUNNING", "DIGESTS"]]
        for t in targets:
            ready = f"{t.get('availableReplicas', 0)}/{t.get('replicas', 0)}"
            digests = "verified" if t.get("digestsVerified") else "-"
            observed = t.get("observedImages") or {}
            for container, image in sorted((t.get("expectedImages") or {}).items()) or [("-", "-")]:
                running = ", ".join(observed.get(container) or []) or "-"
                rows.append([f"{t['namespace']}/{t['name']}", ready, container, image, running, digests])
            if t.get("message"):
                rows.append(["", "", "", f"  {t['message']}", "", ""])
        lines += ["  " + line for line in columns(rows).splitlines()]
    else:
        names = ", ".join(t.get("name", "?") for t in spec.get("targets") or []) or "the default agents Deployments"
        lines.append(f"  none evaluated yet ({names})")
    lines += ["", "Conditions:"]
    conditions = status.get("conditions") or []
    if conditions:
        rows = [["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]]
        rows += [
            [c["type"], c["status"], c.get("reason", ""), c.get("lastTransitionTime", ""), c.get("message", "")]
            for c in conditions
        ]
        lines += ["  " + line for line in columns(rows).splitlines()]
    else:
        lines.append("  none yet")
    lines += ["", "Events:"]
    if events:
        rows = [["TYPE", "REASON", "LAST SEEN", "MESSAGE"]]
        for e in events:
            seen = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""
            rows.append([e.get("type", ""), e.get("reason", ""), str(seen), e.get("message", "")])
        lines += ["  " + line for line in columns(rows).splitlines()]
    else:
        lines.append("  none")
    return "\n".join(lines) + "\n"


def again_manifest(old: Mapping[str, Any]) -> dict[str, Any]:
    """A new verification with the old one's spec: a fresh audit record, named after it."""
    meta = old["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k == APPLICATION_LABEL}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "generateName": f"{meta['name'][:50]}-again-",
            "namespace": meta.get("namespace"),
            **({"labels": labels} if labels else {}),
            "annotations": {AGAIN_ANNOTATION: meta["name"]},
        },
        "spec": old.get("spec") or {},
    }


# -- the shell: the cluster calls ---------------------------------------------------------------


def _list(kube: Any, namespace: str, args: argparse.Namespace) -> int:
    items = kube.list_verifications(None if args.all_namespaces else namespace)
    if not items:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        print(f"No RollbackVerifications in {where}.", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(list_table(items, time.time(), with_namespace=args.all_namespaces))
    return EXIT_OK


def _get(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = kube.get_verification(namespace, name)
    except ApiException as exc:
        if exc.status == 404:
            raise UsageError(f"RollbackVerification {namespace}/{name} not found") from None
        raise
    return obj


def _describe(kube: Any, namespace: str, args: argparse.Namespace) -> int:
    obj = _get(kube, namespace, args.name)
    events = kube.list_events(namespace, KIND, args.name)
    sys.stdout.write(describe_text(obj, events))
    return EXIT_OK


def _verify_again(kube: Any, namespace: str, args: argparse.Namespace) -> int:
    created = kube.create_verification(namespace, again_manifest(_get(kube, namespace, args.name)))
    print(f"rollbackverification.{GROUP}/{created['metadata']['name']} created (the spec of {args.name})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(f"kubectl rbv {args.command}", lambda: _connect_and_run(args))


def _connect_and_run(args: argparse.Namespace) -> int:
    from rollback_verifier.controller.kube import cluster_errors, connect, context_namespace

    kube = connect(args.kubeconfig, args.context)
    namespace = args.namespace or context_namespace(args.kubeconfig, args.context)
    handler: Callable[[Any, str, argparse.Namespace], int] = args.handler
    with cluster_errors(lambda: str(kube.api_client.configuration.host)):
        return handler(kube, namespace, args)
