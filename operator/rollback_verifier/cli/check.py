"""`rollback-verifier check`: a one-shot verification for emergency rollbacks done outside GitOps
(e.g. `helm rollback`), or of an Argo CD Application's last rollback. Same core as the operator; no
CRD needed. Exit codes: cli.EXIT_CODES_HELP.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rollback_verifier.api.models import (
    DEFAULT_TARGETS,
    ApplicationRef,
    DetectedBy,
    DigestPolicy,
    GitValuesSource,
    Phase,
    RollbackVerificationSpec,
    RollbackVerificationStatus,
    Target,
    ValuesFrom,
)
from rollback_verifier.core.images import ImageRef, InvalidImageReference, InvalidImageValues, resolve_expected_image
from rollback_verifier.core.plain import format_time
from rollback_verifier.core.rollout import deployment_view, pod_view
from rollback_verifier.core.trust import RepositoryPolicy
from rollback_verifier.core.verdict import TargetInput, Verdict, decide, merge_conditions
from rollback_verifier.errors import EXIT_CODES_HELP, EXIT_FAILED, EXIT_OK, UsageError

OUTPUTS = ("table", "json", "yaml")


def _default_targets_text() -> str:
    return ", ".join(f"{t.name}={','.join(t.imageValues or ())}" for t in DEFAULT_TARGETS)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check",
        help="verify live Deployments once (or until --timeout) against a values file, explicit images "
        "or an Argo CD Application's history entry",
        description="Verify that the target Deployments run the images the reverted values pin. "
        f"Without --target the targets are the agents chart's: {_default_targets_text()} "
        "(the Deployment name, then the values keys of its image, first set wins); "
        "for another chart pass --target.",
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("--namespace", "-n", required=True, help="namespace of the target Deployments")
    p.add_argument(
        "--target",
        action="append",
        metavar="NAME[=KEY,KEY...]",
        help="a Deployment and the values keys of its image, e.g. agents-controllers=controllers.image,image "
        f"(repeatable; default: {_default_targets_text()})",
    )
    p.add_argument(
        "--containers",
        action="append",
        metavar="NAME=C1[,C2...]",
        help="the containers of target NAME to check (repeatable; default: those running the expected image's "
        "repository, so sidecars are not judged)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--values", "-f", type=Path, help="the reverted Helm values file")
    source.add_argument(
        "--application",
        metavar="NAME",
        help="read the expected images from this Argo CD Application's newest history entry (or --revision's): "
        "its inline Helm values, or with --values-path the values file in its source repository",
    )
    p.add_argument("--application-namespace", default="argocd", metavar="NS", help="default: argocd")
    p.add_argument("--revision", help="with --application: the history entry of this revision (default: the newest)")
    p.add_argument(
        "--values-path",
        metavar="PATH",
        help="with --application: the values file in the Application's source repository, read with your git "
        "at the entry's revision",
    )
    p.add_argument("--repo-url", help="with --values-path: another repository than the Application's source")
    p.add_argument(
        "--image", action="append", metavar="NAME=IMAGE", help="an explicit expected image for a target (repeatable)"
    )
    p.add_argument("--digest-policy", choices=[d.value for d in DigestPolicy], default=DigestPolicy.AUTO.value)
    p.add_argument(
        "--timeout", type=float, default=0, help="seconds to wait for the rollouts (default 0: evaluate once)"
    )
    p.add_argument("--output", "-o", choices=OUTPUTS, default="table", help="json/yaml: the fields of the CR status")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current context)")
    p.set_defaults(handler=_run)


def _pairs(items: list[str] | None, option: str, form: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"{option} {item!r}: expected {form}")
        out[name] = value
    return out


def parse_targets(args: argparse.Namespace) -> list[Target]:
    explicit = _pairs(args.image, "--image", "NAME=IMAGE")
    containers = {
        name: [c for c in value.split(",") if c]
        for name, value in _pairs(args.containers, "--containers", "NAME=C1[,C2...]").items()
    }
    targets: list[Target] = []
    try:
        if args.target:
            for item in args.target:
                name, _, keys = item.partition("=")
                image_values = [k for k in keys.split(",") if k] or None
                targets.append(
                    Target(
                        name=name,
                        namespace=args.namespace,
                        imageValues=image_values,
                        image=explicit.get(name),
                        containers=containers.get(name),
                    )
                )
        else:
            targets = [
                Target.model_validate(
                    {
                        **t.model_dump(exclude_none=True),
                        "namespace": args.namespace,
                        "image": explicit.get(t.name),
                        "containers": containers.get(t.name),
                    }
                )
                for t in DEFAULT_TARGETS
            ]
    except ValidationError as exc:
        raise UsageError(f"--target: {exc.errors()[0]['msg']}") from exc
    names = {t.name for t in targets}
    for option, given in (("--image", explicit), ("--containers", containers)):
        unknown = set(given) - names
        if unknown:
            raise UsageError(f"{option} names no target: {', '.join(sorted(unknown))}")
    return targets


def load_values(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read values file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"values file {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise UsageError(f"values file {path} is not a YAML mapping")
    return loaded


def expected_images(targets: list[Target], values: dict[str, Any] | None) -> dict[str, ImageRef]:
    out = {}
    for t in targets:
        if t.image is None and values is None:
            raise UsageError(f"target {t.name}: give --values, --application or --image {t.name}=IMAGE")
        try:
            out[t.name] = resolve_expected_image(t, values)
        except (InvalidImageReference, InvalidImageValues) as exc:
            raise UsageError(f"target {t.name}: {exc}") from exc
    return out


def application_expectations(
    args: argparse.Namespace, targets: list[Target], application: dict[str, Any] | None
) -> tuple[dict[str, ImageRef], str | None]:
    """Expected images (and the revision) from the Application's history entry, with the operator's own
    resolution: the entry's inline Helm values, or the values file in git at the entry's revision."""
    from rollback_verifier.values.expectations import ExpectationError, resolve_expectations
    from rollback_verifier.values.git import GitValuesReader

    where = f"{args.application_namespace}/{args.application}"
    if application is None:
        raise UsageError(f"Application {where} not found")
    values_from = None
    if args.values_path:
        values_from = ValuesFrom(git=GitValuesSource(repoURL=args.repo_url, path=args.values_path))
    try:
        spec = RollbackVerificationSpec(
            application=ApplicationRef(name=args.application, namespace=args.application_namespace),
            revision=args.revision,
            valuesFrom=values_from,
            targets=targets,
        )
    except ValidationError as exc:
        raise UsageError(exc.errors()[0]["msg"]) from exc
    with tempfile.TemporaryDirectory(prefix="rollback-verifier-") as cache:
        try:
            found = resolve_expectations(
                spec,
                targets,
                application=application,
                reader=GitValuesReader(Path(cache)) if values_from else None,
                read_secret=None,
                # The CLI reads with its user's own identity and git: no one borrows the operator's, so
                # local repositories are fine (other transports stay refused).
                repositories=RepositoryPolicy(allow_local=True),
            )
        except ExpectationError as exc:
            hint = "" if values_from else "; with valueFiles in git, pass --values-path PATH"
            raise UsageError(f"Application {where}: {exc.message}{hint}") from exc
    return {name: image for (_, name), image in found.images.items()}, found.revision


def evaluate(
    kube: Any, targets: list[Target], expected: dict[str, ImageRef], policy: str, deadline_passed: bool
) -> Verdict:
    by_ns: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for ns in {t.namespace or "" for t in targets}:
        deployments = {d["metadata"]["name"]: deployment_view(d) for d in kube.list_deployments(ns)}
        by_ns[ns] = (deployments, [pod_view(p) for p in kube.list_pods(ns)])
    inputs = []
    for t in targets:
        deployments, pods = by_ns[t.namespace or ""]
        inputs.append(TargetInput(t, expected[t.name], deployments.get(t.name), pods))
    return decide(inputs, policy, None, deadline_passed)


def status_document(verdict: Verdict, started: float, completed: float, revision: str | None) -> dict[str, Any]:
    """The verdict as a RollbackVerification's status would hold it (for --output json|yaml)."""
    status = RollbackVerificationStatus(
        phase=verdict.phase,
        reason=verdict.reason,
        message=verdict.message,
        detectedBy=DetectedBy.MANUAL,
        revision=revision,
        shortRevision=revision[:8] if revision else None,
        startedAt=format_time(started),
        completedAt=format_time(completed) if verdict.final else None,
        durationSeconds=round(completed - started, 1) if verdict.final else None,
        targets=verdict.targets,
        orphanedResources=verdict.orphans,
        conditions=merge_conditions([], verdict.conditions, format_time(completed)),
    )
    return status.model_dump(mode="json", exclude_none=True)


def print_table(verdict: Verdict, out: Any = sys.stdout) -> None:
    rows = [("TARGET", "READY", "EXPECTED", "RUNNING", "DIGESTS", "STATE")]
    for t in verdict.targets:
        expected = ", ".join(sorted(set(t.expectedImages.values()))) or "-"
        running = ", ".join(sorted({i for images in t.observedImages.values() for i in images})) or "-"
        ready = f"{t.availableReplicas}/{t.replicas}"
        state = "ok" if (t.message is None or not t.message.startswith(t.name + ":")) else t.message.split(": ", 1)[1]
        rows.append(
            (f"{t.namespace}/{t.name}", ready, expected, running, "verified" if t.digestsVerified else "-", state)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1], file=out)
    print(
        f"\n{verdict.phase.value}" + (f" ({verdict.reason.value})" if verdict.reason else "") + f": {verdict.message}",
        file=out,
    )


def _run(args: argparse.Namespace) -> int:
    if args.timeout < 0:
        raise UsageError("--timeout must be >= 0")
    if (args.values_path or args.revision or args.repo_url) and not args.application:
        raise UsageError("--revision, --values-path and --repo-url go with --application")
    if args.repo_url and not args.values_path:
        raise UsageError("--repo-url goes with --values-path")
    targets = parse_targets(args)
    if not args.target:  # said on stderr: the table or document on stdout stays clean
        print(
            f"targets: {_default_targets_text()} (the agents chart's; --target NAME=KEY,... for another chart)",
            file=sys.stderr,
        )
    values = load_values(args.values)
    # Bad input is found before the cluster is asked anything.
    if args.application:
        expected = expected_images([t for t in targets if t.image is not None], None)
    else:
        expected = expected_images(targets, values)

    from rollback_verifier.controller.kube import cluster_errors, connect

    kube = connect(args.kubeconfig, args.context)
    started = time.time()
    revision = args.revision
    with cluster_errors(lambda: str(kube.api_client.configuration.host)):
        if args.application:
            application = kube.get_application(args.application_namespace, args.application)
            from_history, revision = application_expectations(args, targets, application)
            expected = {**from_history, **expected}  # an explicit --image beats the values
        feed = ChangeFeed(kube, {t.namespace or "" for t in targets}, args.timeout) if args.timeout else None
        try:
            verdict = _verify(kube, targets, expected, args, feed)
        finally:
            streams_ended = feed.close() if feed is not None else True
    completed = time.time()
    if args.output == "table":
        print_table(verdict)
    else:
        document = status_document(verdict, started, completed, revision)
        if args.output == "json":
            print(json.dumps(document, indent=2))
        else:
            print(yaml.safe_dump(document, sort_keys=False), end="")
    code = EXIT_OK if verdict.phase == Phase.SUCCEEDED else EXIT_FAILED
    if not streams_ended:
        # A watch thread that would not stop: leave without finalizing the interpreter, whose teardown
        # such a thread can abort (SIGABRT after the verdict was printed).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _verify(
    kube: Any, targets: list[Target], expected: dict[str, ImageRef], args: argparse.Namespace, feed: ChangeFeed | None
) -> Verdict:
    """Evaluate now, and with a feed again on every Deployment or Pod change until final or the deadline."""
    deadline = time.monotonic() + args.timeout
    while True:
        verdict = evaluate(kube, targets, expected, args.digest_policy, time.monotonic() >= deadline)
        if verdict.final or feed is None:
            return verdict
        feed.wait(deadline - time.monotonic())


class ChangeFeed:
    """Watches the Deployments and Pods of some namespaces (one stream per thread) and wakes `wait` at
    any event. `close` ends every stream and joins its thread: no thread of ours may still run while
    the interpreter finalizes, where a daemon thread writing or raising can abort the process
    (SIGABRT) after the verdict was printed."""

    def __init__(self, kube: Any, namespaces: set[str], timeout: float) -> None:
        from kubernetes import client

        from rollback_verifier.controller.kube import Kube

        self._changed = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._responses: set[Any] = set()
        # A connection pool of the feed's own: a stream's connection, shut down by `close` or broken, is
        # never handed to the main thread's reads (which then failed with EBADF).
        self._client = client.ApiClient(kube.api_client.configuration)
        own = Kube(self._client)
        end = time.monotonic() + timeout
        self._threads = [
            threading.Thread(target=self._pump, args=(fn, end), daemon=True, name=f"watch {ns}")
            for ns in sorted(namespaces)
            for fn in (own.deployments_lister(ns), own.pods_lister(ns))
        ]
        for thread in self._threads:
            thread.start()

    def wait(self, timeout: float) -> None:
        if timeout > 0 and self._changed.wait(timeout):
            self._changed.clear()

    def _pump(self, list_fn: Any, end: float) -> None:
        while not self._closed.is_set() and (remaining := end - time.monotonic()) > 0:
            try:
                response = list_fn(
                    watch=True,
                    timeout_seconds=max(1, int(remaining)),
                    _preload_content=False,
                    _request_timeout=(5, remaining + 30),
                )
            except Exception:  # the main loop's own reads report cluster errors
                self._changed.set()
                self._closed.wait(1)
                continue
            with self._lock:
                self._responses.add(response)
            try:
                if not self._closed.is_set():
                    for _ in response.stream(amt=None, decode_content=False):
                        self._changed.set()  # any event: evaluate again (the evaluation re-reads)
            except Exception:  # a broken stream: something may have changed; watch again
                self._changed.set()
                self._closed.wait(1)
            finally:
                with self._lock:
                    self._responses.discard(response)
                response.release_conn()

    def close(self, join_timeout: float = 8) -> bool:
        """End the streams and join the threads; False if a thread is still running after join_timeout."""
        self._closed.set()
        with self._lock:
            for response in self._responses:
                response.shutdown()  # unblocks a read in another thread (urllib3 >= 2.3)
        end = time.monotonic() + join_timeout
        for thread in self._threads:
            thread.join(max(0, end - time.monotonic()))
        ended = not any(t.is_alive() for t in self._threads)
        if ended:
            self._client.close()
        return ended
