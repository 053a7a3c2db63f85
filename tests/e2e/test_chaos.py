"""Chaos on the real cluster, bounded to a few minutes: the operator killed over and over during
rollbacks, the whole control plane (etcd and kube-apiserver included) stopped and started again, and
200 verifications at once. (The frozen API connection and the hanging remotes are in test_faults.py;
`make chaos` runs both files and prints the figures.)

What must hold, each time: every verification reaches a verdict, none is lost, none changes once
written, and each has exactly one Started and one verdict Event.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from harness.agents import GitOpsRepo, deploy_a_then_b, expected, git_values_spec, verification, wait_verdict
from harness.support import Cluster, running_operator, wait_saw_every_verdict

from tests.e2e.conftest import CLUSTER_SH
from tests.e2e.test_verifier import events_for

FINAL = ("Succeeded", "Failed")
VERDICT_REASONS = ("Verified", "TargetNotFound", "RolloutTimeout", "ImageMismatch", "DigestMismatch")


def verdicts(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.get("-n", namespace, "rbv")["items"]
    return {i["metadata"]["name"]: dict(i.get("status") or {}) for i in items}


class VerdictWatch:
    """Polls the verdicts while chaos goes on: the first final status seen of each object, and any later
    read that differs from it (a verdict changed after it was written)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.first: dict[str, tuple[Any, ...]] = {}
        self.changed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                current = verdicts(self.cluster, self.namespace)
            except AssertionError:  # the API server is down (the outage test): try again
                self._stop.wait(1)
                continue
            for name, s in current.items():
                if s.get("phase") not in FINAL:
                    continue
                seen = (s.get("phase"), s.get("reason"), s.get("completedAt"), s.get("message"))
                if self.first.setdefault(name, seen) != seen:
                    self.changed.append(f"{name}: {self.first[name]} -> {seen}")
            self._stop.wait(0.5)

    def __enter__(self) -> VerdictWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def assert_one_started_and_one_verdict_event(cluster: Cluster, namespace: str, names: list[str]) -> None:
    for name in names:
        reasons = [e["reason"] for e in events_for(cluster, namespace, name) for _ in range(e.get("count", 1))]
        assert reasons.count("Started") == 1, (name, reasons)
        assert sum(reasons.count(r) for r in VERDICT_REASONS) == 1, (name, reasons)


def test_the_operator_killed_every_few_seconds_over_rollbacks_loses_and_changes_no_verdict(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.install_crd()
    repo = GitOpsRepo(tmp_path / "gitops")
    revs = dict(zip(("A", "B"), deploy_a_then_b(cluster, namespace, repo), strict=True))
    rollbacks = 20
    stop = threading.Event()
    kills = 0

    def kill_loop() -> None:
        nonlocal kills
        rng = random.Random(12)  # noqa: S311 - kill intervals, not secrets: reproducible on purpose
        n = 0
        while not stop.is_set():
            # Killed 0.3-4 s after it is up (its Python start-up alone takes longer on a loaded machine).
            with running_operator(cluster, [namespace], tmp_path / f"op-{n}") as op:
                stop.wait(rng.uniform(0.3, 4.0))
                op.stop(kill=True)
                kills += 1
            n += 1

    names = []
    started = time.monotonic()
    with VerdictWatch(cluster, namespace) as watch:
        killer = threading.Thread(target=kill_loop, daemon=True)
        killer.start()
        try:
            for i in range(rollbacks):
                release = "A" if i % 2 == 0 else "B"  # B runs first: roll back to A, then forward to B, ...
                name = f"kill-{i:02d}"
                cluster.apply(verification(name, git_values_spec(repo, revs[release], timeoutSeconds=300)), namespace)
                # To the previous revision (helm prunes old ones): it alternates B -> A -> B ...
                cluster.helm("rollback", "agents", "-n", namespace)
                names.append(name)
                # Judged while the operator keeps dying: each verdict before the next rollback undoes it.
                wait_verdict(cluster, namespace, name, timeout=120)
        finally:
            stop.set()
            killer.join(30)
        with running_operator(cluster, [namespace], tmp_path / "last") as last:
            # A last operator finds every verdict written and leaves it alone.
            wait_saw_every_verdict(cluster, last, rollbacks)
            final = verdicts(cluster, namespace)
    seconds = time.monotonic() - started
    outcomes = [(s["phase"], s["reason"]) for s in final.values()]
    print(
        f"\nchaos kill loop: {rollbacks} rollbacks, {kills} kills in {seconds:.0f}s: "
        f"{outcomes.count(('Succeeded', 'Verified'))}/{rollbacks} Verified, 0 lost, {len(watch.changed)} changed"
    )
    assert outcomes == [("Succeeded", "Verified")] * rollbacks, final
    assert watch.changed == []
    assert_one_started_and_one_verdict_event(cluster, namespace, names)


def test_verdicts_whose_deadline_passes_while_the_control_plane_is_down_are_written_soon_after(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # The deadline of outage-missing passes while etcd and kube-apiserver are down for 30 s.
    name = os.environ.get("RV_E2E_CLUSTER_NAME", "rv-e2e")
    cluster.install_crd()
    specs = {
        "outage-missing": {"targets": [{"name": "gone", "image": expected("A")}], "timeoutSeconds": 12},
        "outage-pass": {"targets": [{"name": "gone-later", "image": expected("A")}], "timeoutSeconds": 600},
    }
    with running_operator(cluster, [namespace], tmp_path) as op, VerdictWatch(cluster, namespace) as watch:
        for n, spec in specs.items():
            cluster.apply(verification(n, spec), namespace)
        cluster.wait_for(
            lambda: (
                all(s.get("phase") == "Running" for s in verdicts(cluster, namespace).values())
                and len(verdicts(cluster, namespace)) == 2
            ),
            timeout=30,
            what="both verifications Running",
        )
        env = {**os.environ, "RV_CLUSTER_NAME": name}
        subprocess.run([str(CLUSTER_SH), "outage", "30"], env=env, check=True, capture_output=True, timeout=300)
        back = time.monotonic()
        cluster.wait_for(
            lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
            timeout=60,
            what="the API server back",
        )
        status = wait_verdict(cluster, namespace, "outage-missing", timeout=90)["status"]
        after = time.monotonic() - back
        # The other one still runs after the outage: the operator works on.
        cluster.apply(
            '{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gone-later"}, "spec": '
            '{"replicas": 1, "selector": {"matchLabels": {"app": "gone-later"}}, "template": {"metadata": '
            '{"labels": {"app": "gone-later"}}, "spec": {"containers": [{"name": "app", "image": "'
            + expected("A")
            + '"}]}}}}',
            namespace,
        )
        passed = wait_verdict(cluster, namespace, "outage-pass", timeout=120)["status"]
        warnings = [e for e in events_for(cluster, namespace, "outage-missing") if e["reason"] == "VerifierError"]
        assert op.process.poll() is None
    print(
        "\nchaos control-plane outage (30 s): the overdue verdict was written"
        f" {after:.1f}s after the API server was back"
    )
    assert (status["phase"], status["reason"]) == ("Failed", "TargetNotFound")
    assert (passed["phase"], passed["reason"]) == ("Succeeded", "Verified")
    assert watch.changed == []
    assert sum(e.get("count", 1) for e in warnings) <= 1, "one VerifierError per outage at most"
    assert_one_started_and_one_verdict_event(cluster, namespace, list(specs))


def test_two_hundred_verifications_at_once_all_reach_their_verdict(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.install_crd()
    repo = GitOpsRepo(tmp_path / "gitops")
    deploy_a_then_b(cluster, namespace, repo)
    count = 200
    plain = {
        "targets": [
            {"name": "agents", "image": expected("B", "registry.example/lab/jangar-control-plane")},
            {"name": "agents-controllers", "image": expected("B")},
        ],
        "timeoutSeconds": 300,
    }
    names = [f"many-{i:03d}" for i in range(count)]
    with running_operator(cluster, [namespace], tmp_path) as operator, VerdictWatch(cluster, namespace) as watch:
        started = time.monotonic()
        cluster.kubectl(
            "-n", namespace, "apply", "-f", "-", input="\n---\n".join(verification(n, plain) for n in names)
        )

        def all_final() -> dict[str, dict[str, Any]] | None:
            got = verdicts(cluster, namespace)
            return got if len(got) == count and all(s.get("phase") in FINAL for s in got.values()) else None

        final = cluster.wait_for(all_final, timeout=240, what=f"{count} verdicts", interval=1)
        seconds = time.monotonic() - started
        wait_saw_every_verdict(cluster, operator, count)
    outcomes = {(s["phase"], s["reason"]) for s in final.values()}
    durations = sorted(float(s["durationSeconds"]) for s in final.values())
    print(
        f"\nchaos {count} verifications at once: all {count} verdicts within {seconds:.1f}s of the apply; "
        f"start-to-verdict p50 {durations[count // 2]:.1f}s, max {durations[-1]:.1f}s; {len(watch.changed)} changed"
    )
    assert outcomes == {("Succeeded", "Verified")}
    assert watch.changed == []
