"""The alert rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from harness.monitoring import dashboard_queries

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "deploy" / "prometheus" / "rules" / "rollback-verifier.rules.yaml"
CHART_RULES = REPO / "deploy" / "chart" / "files" / "rollback-verifier.rules.yaml"
TESTS = REPO / "deploy" / "prometheus" / "tests" / "rollback-verifier.rules.test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks"
DASHBOARD = REPO / "deploy" / "chart" / "files" / "rollback-verifier.dashboard.json"
ALERTS = {"RollbackVerificationFailed", "RollbackVerificationStuck", "RollbackVerifierAbsent"}


def promtool(promtool_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_bin, *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules(promtool_bin):
    for path in (RULES, CHART_RULES):
        proc = promtool(promtool_bin, "check", "rules", str(path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS: 3 rules found" in proc.stdout + proc.stderr


def test_promtool_test_rules(promtool_bin):
    proc = promtool(promtool_bin, "test", "rules", str(TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_test_rules_can_fail(promtool_bin, tmp_path):
    """The unit tests are not vacuous: with the Failed alert's `> 0` inverted they must fail."""
    broken = tmp_path / "rules.yaml"
    broken.write_text(CHART_RULES.read_text().replace(") > 0", ") <= 0"))
    tests = yaml.safe_load(TESTS.read_text())
    tests["rule_files"] = [str(broken)]
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = promtool(promtool_bin, "test", "rules", str(test_file))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "RollbackVerificationFailed" in proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_silent_and_labelled():
    rules = yaml.safe_load(RULES.read_text())
    (group,) = rules["groups"]
    assert group["name"] == "rollback-verifier"
    by_name = {r["alert"]: r for r in group["rules"]}
    assert set(by_name) == ALERTS
    for rule in by_name.values():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook", "runbook_url"} <= set(rule["annotations"])
        assert "kubectl" in rule["annotations"]["runbook"]
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} is never expected to fire"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} is never expected to stay silent"


def test_each_alert_has_a_runbook_page_in_this_repo():
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    pages = set()
    for rule in group["rules"]:
        page = RUNBOOKS / rule["annotations"]["runbook_url"].rsplit("/", 1)[1]
        text = page.read_text()
        assert text.startswith(f"# Runbook: {rule['alert']} ({rule['labels']['severity']})"), page
        for section in ("## What it means", "## What to check", "## What to do"):
            assert section in text, f"{page.name} has no {section!r}"
        pages.add(page.name)
    assert pages == {p.name for p in RUNBOOKS.glob("*.md")}, "a runbook page no alert links to"


def test_the_failed_and_stuck_alerts_read_the_objects_level():
    """A counter starts again at 0 with the operator; the objects gauge does not (see the rule file)."""
    (group,) = yaml.safe_load(RULES.read_text())["groups"]
    by_name = {r["alert"]: r for r in group["rules"]}
    for alert in ("RollbackVerificationFailed", "RollbackVerificationStuck"):
        assert "rollback_verification_objects" in by_name[alert]["expr"]
        assert "_total" not in by_name[alert]["expr"] and "in_progress" not in by_name[alert]["expr"]


def test_every_dashboard_query_parses(promtool_bin, tmp_path):
    """The real promtool parses each panel's PromQL (Grafana's $variables filled in as the e2e does)."""
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 10
    rules = [{"record": f"dashboard:panel_{i}", "expr": q} for i, (_, q) in enumerate(queries)]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = promtool(promtool_bin, "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": "sum by (le"}]}]}))
    assert promtool(promtool_bin, "check", "rules", str(broken)).returncode != 0
