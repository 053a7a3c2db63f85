"""`rollback-verifier check`: a one-shot verification for emergency rollbacks done outside GitOps
(e.g. `helm rollback`). Same core as the operator; no CRD needed. Exit 0 verified, 1 failed, 2 usage.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rollback_verifier.api import DEFAULT_TARGETS, DigestPolicy, Phase, Target
from rollback_verifier.cli import EXIT_FAILED, EXIT_OK, UsageError
from rollback_verifier.images import ImageRef, InvalidImageReference, InvalidImageValues, resolve_expected_image
from rollback_verifier.rollout import deployment_view, pod_view
from rollback_verifier.verdict import TargetInput, Verdict, decide


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check",
        help="verify live Deployments once (or until --timeout) against a values file or explicit images",
        description="Exit codes: 0 verified, 1 verification failed, 2 bad usage or bad input.",
    )
    p.add_argument("--namespace", "-n", required=True, help="namespace of the target Deployments")
    p.add_argument(
        "--target",
        action="append",
        metavar="NAME[=KEY,KEY...]",
        help="a Deployment and the values keys of its image, e.g. agents-controllers=controllers.image,image "
        "(repeatable; default: the agents and agents-controllers Deployments)",
    )
    p.add_argument("--values", "-f", type=Path, help="the reverted Helm values file")
    p.add_argument(
        "--image", action="append", metavar="NAME=IMAGE", help="an explicit expected image for a target (repeatable)"
    )
    p.add_argument("--digest-policy", choices=[d.value for d in DigestPolicy], default=DigestPolicy.AUTO.value)
    p.add_argument(
        "--timeout", type=float, default=0, help="seconds to wait for the rollouts (default 0: evaluate once)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or in-cluster)")
    p.set_defaults(handler=_run)


def parse_targets(args: argparse.Namespace) -> list[Target]:
    explicit: dict[str, str] = {}
    for item in args.image or ():
        name, sep, image = item.partition("=")
        if not sep or not name or not image:
            raise UsageError(f"--image {item!r}: expected NAME=IMAGE")
        explicit[name] = image
    targets: list[Target] = []
    try:
        if args.target:
            for item in args.target:
                name, _, keys = item.partition("=")
                image_values = [k for k in keys.split(",") if k] or None
                targets.append(
                    Target(name=name, namespace=args.namespace, imageValues=image_values, image=explicit.get(name))
                )
        else:
            targets = [
                t.model_copy(update={"namespace": args.namespace, "image": explicit.get(t.name)})
                for t in DEFAULT_TARGETS
            ]
    except ValidationError as exc:
        raise UsageError(f"--target: {exc.errors()[0]['msg']}") from exc
    unknown = set(explicit) - {t.name for t in targets}
    if unknown:
        raise UsageError(f"--image names no target: {', '.join(sorted(unknown))}")
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
            raise UsageError(f"target {t.name}: give --values or --image {t.name}=IMAGE")
        try:
            out[t.name] = resolve_expected_image(t, values)
        except (InvalidImageReference, InvalidImageValues) as exc:
            raise UsageError(f"target {t.name}: {exc}") from exc
    return out


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
    targets = parse_targets(args)
    values = load_values(args.values)
    expected = expected_images(targets, values)

    from kubernetes import config

    from rollback_verifier.kube import Kube, load_client_config

    try:
        if args.kubeconfig:
            config.load_kube_config(config_file=args.kubeconfig)
            from kubernetes import client

            kube = Kube(client.ApiClient())
        else:
            kube = Kube(load_client_config())
    except (config.ConfigException, OSError) as exc:
        raise UsageError(f"no cluster to talk to: {exc}") from exc

    deadline = time.monotonic() + args.timeout
    changes = _watch_changes(kube, {t.namespace or "" for t in targets}, args.timeout) if args.timeout else None
    while True:
        verdict = evaluate(kube, targets, expected, args.digest_policy, deadline_passed=time.monotonic() >= deadline)
        if verdict.final:
            break
        remaining = deadline - time.monotonic()
        if changes is not None and remaining > 0:
            try:  # sleep until a Deployment or Pod changes (watch events), or the deadline
                changes.get(timeout=remaining)
                while not changes.empty():
                    changes.get_nowait()
            except queue.Empty:
                pass
    print_table(verdict)
    return EXIT_OK if verdict.phase == Phase.SUCCEEDED else EXIT_FAILED


def _watch_changes(kube: Any, namespaces: set[str], timeout: float) -> queue.Queue[str]:
    """Watch Deployments and Pods of the namespaces in daemon threads; each event lands in the queue."""
    from kubernetes import watch

    changes: queue.Queue[str] = queue.Queue()

    def pump(list_fn: Any, ns: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                for _ in watch.Watch().stream(
                    list_fn, ns, timeout_seconds=max(1, int(end - time.monotonic())), _request_timeout=(5, timeout + 30)
                ):
                    changes.put(ns)
            except Exception:  # a broken stream: say "something may have changed" and watch again
                changes.put(ns)
                time.sleep(1)

    for ns in namespaces:
        for fn in (kube.apps.list_namespaced_deployment, kube.core.list_namespaced_pod):
            threading.Thread(target=pump, args=(fn, ns), daemon=True).start()
    return changes
