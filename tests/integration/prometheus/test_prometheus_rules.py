"""The alert rules, checked and unit-tested by the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "deploy" / "prometheus" / "rules" / "rollback-verifier.rules.yaml"
CHART_RULES = REPO / "deploy" / "chart" / "files" / "rollback-verifier.rules.yaml"
TESTS = REPO / "deploy" / "prometheus" / "tests" / "rollback-verifier.rules.test.yaml"
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
        assert {"summary", "description", "runbook"} <= set(rule["annotations"])
        assert "kubectl" in rule["annotations"]["runbook"]
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} is never expected to fire"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} is never expected to stay silent"
