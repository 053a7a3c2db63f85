"""The alerts and the dashboard against a real Prometheus and Alertmanager scraping the real operator.

One operator, Prometheus, Alertmanager and webhook receiver serve the whole module (see harness/monitoring.py
for the time scale). Real verifications of the fixture agents app (a rollback that lands, one that
does not) feed the metrics; the last test stops and restarts the operator, so it runs last.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.agents import GitOpsRepo, git_values_spec, helm_deploy, images, verification, wait_verdict
from harness.monitoring import (
    DASHBOARD,
    JOB,
    Prometheus,
    Received,
    dashboard_queries,
    monitoring_stack,
    parse_rfc3339,
    since,
    wait,
)
from harness.support import Cluster, Operator, running_operator

HOLD_LABEL = "e2e.gitops.proompteng.ai/hold-verdict"


@dataclass
class Stack:
    cluster: Cluster
    namespace: str
    tmp: Path
    settings: Path
    operator: Operator
    prometheus: Prometheus
    received: Received
    started: float
    repo: GitOpsRepo
    revisions: dict[str, str]


@pytest.fixture(scope="module")
def stack(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cluster.install_crd()
    tmp = tmp_path_factory.mktemp("alerting")
    namespace = cluster.create_namespace(f"alerting-{int(time.time()) % 100000}")
    repo = GitOpsRepo(tmp / "gitops")
    revisions = {r: repo.commit_values(images(r), f"release {r}") for r in "ABC"}
    # The agents app is watched (its detection counters start at 0); no Argo CD runs here.
    settings = tmp / "settings.yaml"
    watched = {"name": "agents", "verificationNamespace": namespace, "valuesFrom": {"git": {"path": "x.yaml"}}}
    settings.write_text(yaml.safe_dump({"detection": {"applications": [watched]}}))
    with ExitStack() as stack_:
        operator = stack_.enter_context(running_operator(cluster, [namespace], tmp / "operator", settings=settings))
        prometheus, received = stack_.enter_context(monitoring_stack(operator.metrics_port, tmp / "monitoring"))
        yield Stack(cluster, namespace, tmp, settings, operator, prometheus, received, time.time(), repo, revisions)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def verified(stack: Stack) -> dict[str, dict[str, Any]]:
    """A rollback B -> A that lands (Succeeded, decided by the rollout's own changes) and a
    verification of release C, which never ships (Failed, ImageMismatch at its 5 s deadline)."""
    c, ns, rev = stack.cluster, stack.namespace, stack.revisions
    helm_deploy(c, ns, stack.repo.values_at(rev["A"]))
    helm_deploy(c, ns, stack.repo.values_at(rev["B"]))
    for d in ("agents", "agents-controllers"):
        c.rollout_status(ns, d)
    # Created before the rollback, so the verdict is decided by the rollout's events (verdict latency).
    c.apply(verification("rollback-to-a", git_values_spec(stack.repo, rev["A"], timeoutSeconds=90)), ns)
    c.helm("rollback", "agents", "1", "-n", ns)
    c.apply(verification("release-c", git_values_spec(stack.repo, rev["C"], timeoutSeconds=5)), ns)
    out = {name: wait_verdict(c, ns, name, timeout=90)["status"] for name in ("rollback-to-a", "release-c")}
    assert (out["rollback-to-a"]["phase"], out["rollback-to-a"]["reason"]) == ("Succeeded", "Verified")
    assert (out["release-c"]["phase"], out["release-c"]["reason"]) == ("Failed", "ImageMismatch")
    return out


def test_prometheus_scrapes_the_operators_real_metrics(stack: Stack) -> None:
    up = wait(lambda: stack.prometheus.query(f'up{{job="{JOB}"}} == 1'), 30, "Prometheus to scrape the operator")
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{stack.operator.metrics_port}"
    detected = wait(
        lambda: stack.prometheus.query('rollback_verification_detected_total{application="agents"}'),
        30,
        "the detection counters of the watched application",
    )
    assert {s["metric"]["detected_by"] for s in detected} == {"ArgoCDHistory", "RevisionAncestry", "ContentRevert"}


def test_failed_verification_fires_reaches_the_webhook_and_resolves(
    stack: Stack, verified: dict[str, dict[str, Any]]
) -> None:
    p, received = stack.prometheus, stack.received
    firing = wait(
        lambda: p.alerts("RollbackVerificationFailed", "firing", reason="ImageMismatch"),
        30,
        "RollbackVerificationFailed to fire in Prometheus",
    )
    assert firing[0]["labels"]["severity"] == "critical"
    assert "ImageMismatch" in firing[0]["annotations"]["summary"]
    assert firing[0]["annotations"]["runbook_url"].endswith("/rollback-verification-failed.md")
    level = p.query('rollback_verification_objects{phase="Failed",reason="ImageMismatch"}')
    assert [s["value"][1] for s in level] == ["1"]

    sent = wait(
        lambda: received.alerts("RollbackVerificationFailed", "firing", reason="ImageMismatch"),
        30,
        "Alertmanager to deliver RollbackVerificationFailed to the webhook",
    )
    assert sent[0]["receiver"] == "gitops-oncall"  # the shipped route, not the catch-all
    # The rule's window is 15 minutes (15 s here): after it, the alert resolves on its own.
    wait(
        lambda: received.alerts("RollbackVerificationFailed", "resolved", reason="ImageMismatch"),
        60,
        "the resolved notification of RollbackVerificationFailed",
    )
    assert p.alerts("RollbackVerificationFailed", reason="ImageMismatch") == []
    assert stack.cluster.get("-n", stack.namespace, "rbv", "release-c")["status"]["phase"] == "Failed"  # still there


HOLD_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [gitops.proompteng.ai]
        apiVersions: [v1alpha1]
        operations: [UPDATE]
        resources: [rollbackverifications/status]
  validations:
    - expression: >-
        !has(object.status) || !has(object.status.phase) || !(object.status.phase in ['Succeeded', 'Failed'])
      message: verdicts of this object are held by the e2e
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    objectSelector:
      matchLabels: {{"{label}": "true"}}
"""


def test_a_verification_held_past_its_timeout_fires_stuck(stack: Stack, verified: dict[str, dict[str, Any]]) -> None:
    """A real admission policy refuses the verdict's status write (as a broken webhook or a quota
    would): the object stays Running past its 3 s timeout, the operator retries, Stuck fires."""
    c, ns, p = stack.cluster, stack.namespace, stack.prometheus
    policy = f"hold-verdicts-{ns}"
    c.apply(HOLD_POLICY.format(name=policy, label=HOLD_LABEL))
    try:
        _wait_policy_active(c, stack.namespace)
        held = json.loads(verification("held", git_values_spec(stack.repo, stack.revisions["A"], timeoutSeconds=3)))
        held["metadata"]["labels"] = {HOLD_LABEL: "true"}
        c.apply(json.dumps(held), ns)
        refused = wait(
            lambda: [
                e
                for e in c.get("-n", ns, "events", "--field-selector", "involvedObject.name=held")["items"]
                if e["reason"] == "VerifierError"
            ],
            30,
            "the operator to be refused the verdict write",
        )
        assert refused and "held by the e2e" in stack.operator.log()  # the policy's message, in the write's error
        firing = wait(
            lambda: p.alerts("RollbackVerificationStuck", "firing"),
            90,
            "RollbackVerificationStuck to fire",
        )
        assert c.get("-n", ns, "rbv", "held")["status"]["phase"] == "Running"
        started = c.get("-n", ns, "rbv", "held")["status"]["startedAt"]
        assert firing[0]["labels"]["severity"] == "warning"
        assert firing[0]["annotations"]["runbook_url"].endswith("/rollback-verification-stuck.md")
        wait(lambda: stack.received.alerts("RollbackVerificationStuck", "firing"), 30, "Stuck at the webhook")
    finally:
        c.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy, check=False)
    # Released: the operator's next retry writes the verdict, with the deadline it started with.
    status = wait_verdict(c, ns, "held", timeout=90)["status"]
    assert (status["phase"], status["reason"], status["startedAt"]) == ("Succeeded", "Verified", started)
    wait(lambda: stack.received.alerts("RollbackVerificationStuck", "resolved"), 60, "Stuck to resolve")


def _wait_policy_active(c: Cluster, namespace: str) -> None:
    """The policy is enforced once a server-side dry run of a verdict write on a held object is refused.
    The probe object lives in a namespace the operator does not watch."""
    probe_ns = c.create_namespace(f"{namespace}-probe")
    probe = json.loads(verification("probe", {"revision": "0" * 40, "valuesFrom": {"applicationHelmValues": True}}))
    probe["metadata"]["labels"] = {HOLD_LABEL: "true"}
    c.apply(json.dumps(probe), probe_ns)
    patch = json.dumps({"status": {"phase": "Failed"}})

    def refused() -> bool:
        proc = c.kubectl(
            *("-n", probe_ns, "patch", "rbv", "probe", "--subresource=status", "--type=merge", "-p", patch),
            "--dry-run=server",
            check=False,
        )
        return proc.returncode != 0 and "held by the e2e" in proc.stderr

    try:
        wait(refused, 30, "the admission policy to be enforced")
    finally:
        c.kubectl("delete", "namespace", probe_ns, "--wait=false", check=False)


def test_every_dashboard_panel_returns_data(stack: Stack, verified: dict[str, dict[str, Any]]) -> None:
    p = stack.prometheus
    # Some panels read the verdicts' histograms: wait until Prometheus has scraped both verdicts.
    wait(lambda: p.query("sum(rollback_verification_completed_total) >= 2"), 30, "both verdicts in Prometheus")
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard, range_=since(stack.started), rate_interval="1m")
    # The increase() panels read a window that still holds the verdicts.
    empty, not_numbers = [], []
    for title, expr in queries:
        result = p.query(expr)
        if not result:
            empty.append((title, expr))
        elif not any(math.isfinite(float(s["value"][1])) for s in result):
            not_numbers.append((title, expr, result))
    assert not empty, f"panels without data: {empty}"
    assert not not_numbers, f"panels without a number: {not_numbers}"
    latency = p.query(dict(queries)["Verdict latency percentiles (selected range)"])
    assert 0 < float(latency[0]["value"][1]) < 10
    variable = dashboard["templating"]["list"][1]["definition"]
    assert variable == "label_values(rollback_verification_objects, application)"


def test_absent_fires_when_the_operator_stops_and_a_restart_keeps_the_objects_level(
    stack: Stack, verified: dict[str, dict[str, Any]]
) -> None:
    """Runs last in this module: it restarts the operator (its counters start again at 0)."""
    p, received, op = stack.prometheus, stack.received, stack.operator
    wait(lambda: p.query('rollback_verification_objects{phase="Failed"}'), 30, "the objects level in Prometheus")
    before = {s["metric"]["reason"]: s["value"][1] for s in p.query('rollback_verification_objects{phase="Failed"}')}
    op.stop()
    firing = wait(lambda: p.alerts("RollbackVerifierAbsent", "firing"), 60, "RollbackVerifierAbsent to fire")
    assert firing[0]["annotations"]["runbook_url"].endswith("/rollback-verifier-absent.md")
    wait(lambda: received.alerts("RollbackVerifierAbsent", "firing"), 30, "Absent at the webhook")

    restarted_at = time.time()
    with running_operator(
        stack.cluster, [stack.namespace], stack.tmp / "operator-2", settings=stack.settings, port=op.metrics_port
    ):
        wait(lambda: received.alerts("RollbackVerifierAbsent", "resolved"), 60, "Absent to resolve")

        def scraped_up() -> float | None:
            target = p.target(JOB)
            scraped = parse_rfc3339(target["lastScrape"])
            return scraped if target["health"] == "up" and scraped > restarted_at else None

        first_scrape = wait(scraped_up, 30, "Prometheus to scrape the restarted operator")
        wait(lambda: p.last_evaluation() > first_scrape + 1, 30, "a rule evaluation after that scrape")
        after = {s["metric"]["reason"]: s["value"][1] for s in p.query('rollback_verification_objects{phase="Failed"}')}
        assert after == before, "the objects level must read the same after a restart"
        assert p.query('rollback_verification_completed_total{phase="Failed"}') == []  # the counter started over
        assert p.alerts("RollbackVerificationFailed") == []  # old failures are not alerted again
