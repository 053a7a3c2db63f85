"""The README's lint-chart example, on the fixture agents chart, says what the README shows."""

from __future__ import annotations

import json

import pytest
from harness.support import ROOT

from rollback_verifier.cli.main import main

OLD = ROOT / "tests" / "fixtures" / "charts" / "agents"
NEW = ROOT / "tests" / "fixtures" / "charts" / "agents-next"


def test_the_readme_example_flags_the_rename_the_ungated_configmap_and_the_new_default(
    helm_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lint-chart", str(NEW), "--from", str(OLD), "--output", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    rules = {(f["rule"], f["risk"]) for f in report["findings"]}
    assert rules == {
        ("resource-renamed", "high"),
        ("new-resource-ungated", "medium"),
        ("default-value-changed", "info"),
    }
    assert main(["lint-chart", str(OLD), "--from", str(OLD)]) == 0
