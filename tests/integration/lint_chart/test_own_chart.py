"""The project's own chart must stay rollback-safe: `deploy/chart` in the work tree, linted against
the chart as it was first committed (`git log --diff-filter=A -- deploy/chart/Chart.yaml`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rollback_verifier.cli import main as cli

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "chart"
VERSIONS_ENV = REPO / "tests" / "e2e" / "cluster" / "versions.env"


def pinned_kubernetes_version() -> str:
    """The Kubernetes version the project pins for its cluster: the chart's kubeVersion must admit it."""
    for line in VERSIONS_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "KUBERNETES_VERSION":
            return value.strip()
    raise AssertionError(f"no KUBERNETES_VERSION in {VERSIONS_ENV}")


def first_commit_of_chart(git_bin: str) -> str:
    done = subprocess.run(
        [git_bin, "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--", "deploy/chart/Chart.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    commits = done.stdout.split()
    assert commits, "deploy/chart/Chart.yaml has never been committed: nothing to compare the chart with"
    return commits[-1]


def test_own_chart_is_rollback_safe_against_its_first_commit(
    helm_bin: str, git_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (CHART / "Chart.yaml").is_file(), f"{CHART} is not a chart"
    first = first_commit_of_chart(git_bin)
    code = cli.main(
        [
            "lint-chart",
            str(CHART),
            "--from-ref",
            first,
            "--kube-version",
            pinned_kubernetes_version(),
            "--output",
            "json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err or json.dumps(
        [f for f in json.loads(out)["findings"] if f["risk"] in ("high", "very-high")], indent=2
    )
    assert json.loads(out)["summary"]["failing"] == 0
