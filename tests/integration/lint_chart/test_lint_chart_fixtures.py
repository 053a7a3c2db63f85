"""Every rule on a pair of tiny fixture charts, rendered by real helm through the real command.

Fixtures: tests/fixtures/lint-chart/<case>/{old,new}/ (plus, for some cases, a values file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rollback_verifier.cli import main as cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lint-chart"
CONSOLE_SCRIPT = Path(sys.executable).with_name("rollback-verifier")


@pytest.fixture(autouse=True)
def _real_helm(helm_bin: str) -> str:
    """Every test here renders with real helm: a missing helm fails them, never skips them."""
    return helm_bin


def lint(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = cli.main(["lint-chart", *(str(arg) for arg in args)])
    out, err = capsys.readouterr()
    return code, out, err


def lint_case(capsys: pytest.CaptureFixture[str], case: str, *extra: Any) -> tuple[int, dict[str, Any]]:
    code, out, err = lint(
        capsys, FIXTURES / case / "new", "--from", FIXTURES / case / "old", "--output", "json", *extra
    )
    assert err == ""
    document = json.loads(out)
    assert document["summary"]["exit_code"] == code
    return code, document


def rules_and_risks(document: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((f["rule"], f["risk"]) for f in document["findings"])


# case -> (the findings it must produce, exactly; the exit code with the default --fail-on high)
CASES: dict[str, tuple[list[tuple[str, str]], int]] = {
    "no-change": ([], 0),
    "new-resource-ungated": ([("new-resource-ungated", "medium")], 0),
    "new-resource-default-on": ([("default-value-added", "info"), ("new-resource-default-on", "medium")], 0),
    "new-resource-gated": ([("default-value-added", "info")], 0),  # off by default: renders nothing new
    "resource-removed": ([("resource-removed", "high")], 1),
    "resource-renamed": ([("resource-renamed", "high")], 1),
    "selector-changed": ([("selector-changed", "high")], 1),
    "immutable-field-changed": (
        [
            ("default-value-changed", "info"),
            ("immutable-field-changed", "high"),
            ("immutable-field-changed", "high"),
        ],
        1,
    ),
    "api-version-changed": ([("api-version-changed", "low")], 0),
    "hook-added": ([("hook-added", "high")], 1),
    "crd-removed": ([("crd-removed", "very-high")], 1),
    "crd-added": ([("crd-added", "info")], 0),
    "crd-version-removed": ([("crd-version-removed", "very-high")], 1),
    "crd-version-unserved": ([("crd-version-unserved", "very-high")], 1),
    "crd-storage-version-changed": ([("crd-storage-version-changed", "very-high")], 1),
    "crd-field-removed": ([("crd-field-removed", "very-high")], 1),
    "crd-field-type-changed": ([("crd-field-type-changed", "very-high")], 1),
    "crd-field-required": ([("crd-field-required", "very-high")], 1),
    "crd-field-added": ([("crd-field-added", "low")], 0),
    "crd-moved-to-templates": ([("crd-moved-to-templates", "very-high")], 1),
    "crd-moved-to-crds": ([("crd-moved-to-crds", "very-high")], 1),
    "default-value-changed": ([("default-value-changed", "info")], 0),
    "default-value-added": ([("default-value-added", "info")], 0),
    "default-value-removed": ([("default-value-removed", "info")], 0),
}


def test_every_fixture_case_is_listed() -> None:
    on_disk = {path.name for path in FIXTURES.iterdir() if path.is_dir()}
    assert on_disk == {*CASES, "broken"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixture_pair(capsys: pytest.CaptureFixture[str], case: str) -> None:
    expected, exit_code = CASES[case]
    code, document = lint_case(capsys, case)
    assert rules_and_risks(document) == expected, json.dumps(document["findings"], indent=2)
    assert code == exit_code
    for finding in document["findings"]:
        assert finding["message"] and finding["mitigation"] and finding["resource"]


def test_ungated_resource_names_its_template(capsys: pytest.CaptureFixture[str]) -> None:
    _, document = lint_case(capsys, "new-resource-ungated")
    (finding,) = document["findings"]
    assert finding["resource"] == "ConfigMap default/release-name-settings"
    assert "app/templates/configmap.yaml" in finding["message"]


def test_default_on_flag_is_named_and_confirmed_by_a_render(capsys: pytest.CaptureFixture[str]) -> None:
    _, document = lint_case(capsys, "new-resource-default-on")
    finding = next(f for f in document["findings"] if f["rule"] == "new-resource-default-on")
    assert finding["new"] == ["metrics.enabled"]
    assert "metrics.enabled defaults to true" in finding["message"]
    assert "`metrics.enabled: false`" in finding["mitigation"]


def test_gated_resource_switched_on_by_values_is_low(capsys: pytest.CaptureFixture[str]) -> None:
    case = FIXTURES / "new-resource-gated"
    code, document = lint_case(capsys, "new-resource-gated", "-f", case / "enable-metrics.yaml")
    assert rules_and_risks(document) == [("default-value-added", "info"), ("new-resource-gated", "low")]
    gated = next(f for f in document["findings"] if f["rule"] == "new-resource-gated")
    assert "{{ if .Values.metrics.enabled }}" in gated["message"]
    added = next(f for f in document["findings"] if f["rule"] == "default-value-added")
    assert "the given values files set it" in added["message"]
    assert code == 0


def test_fail_on_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    assert lint_case(capsys, "new-resource-ungated", "--fail-on", "medium")[0] == 1
    assert lint_case(capsys, "default-value-changed", "--fail-on", "info")[0] == 1
    assert lint_case(capsys, "default-value-changed", "--fail-on", "low")[0] == 0
    assert lint_case(capsys, "selector-changed", "--fail-on", "very-high")[0] == 0
    assert lint_case(capsys, "crd-removed", "--fail-on", "very-high")[0] == 1


def test_changed_default_carries_old_and_new(capsys: pytest.CaptureFixture[str]) -> None:
    _, document = lint_case(capsys, "default-value-changed")
    (finding,) = document["findings"]
    assert (finding["resource"], finding["old"], finding["new"]) == ("values replicas", 1, 2)
    pinned = FIXTURES / "default-value-changed" / "pin-replicas.yaml"
    _, document = lint_case(capsys, "default-value-changed", "-f", pinned)
    assert "the given values files set it" in document["findings"][0]["message"]


def test_immutable_fixture_reports_both_resources(capsys: pytest.CaptureFixture[str]) -> None:
    _, document = lint_case(capsys, "immutable-field-changed")
    immutable = {f["resource"]: f for f in document["findings"] if f["rule"] == "immutable-field-changed"}
    assert set(immutable) == {"StatefulSet default/release-name-db", "ConfigMap default/release-name-frozen"}
    assert immutable["StatefulSet default/release-name-db"]["new"] == "release-name-db-headless"


def test_release_name_and_namespace_are_passed_to_helm(capsys: pytest.CaptureFixture[str]) -> None:
    _, document = lint_case(capsys, "resource-renamed", "--release-name", "shop", "--namespace", "prod")
    (finding,) = document["findings"]
    assert finding["resource"] == "Deployment prod/shop-web -> shop-frontend"


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    case = FIXTURES / "selector-changed"
    code, out, err = lint(capsys, case / "new", "--from", case / "old")
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"lint-chart: {case / 'old'} -> {case / 'new'}"
    assert lines[2].split() == ["RISK", "RULE", "RESOURCE", "MESSAGE"]
    assert lines[3].startswith("high ")
    assert "selector-changed" in lines[3] and "Deployment default/release-name-web" in lines[3]
    assert lines[4].strip().startswith("mitigation: Keep selectors stable")
    assert lines[-1] == "1 finding (1 high); 1 at or above high: FAIL (exit 1)"


def test_console_script_end_to_end() -> None:
    case = FIXTURES / "hook-added"
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "lint-chart", str(case / "new"), "--from", str(case / "old"), "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    (finding,) = json.loads(done.stdout)["findings"]
    assert finding["rule"] == "hook-added" and finding["new"] == ["pre-upgrade"]
