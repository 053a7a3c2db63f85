"""Fixtures for the chart tests: the real `helm` binary renders deploy/chart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "chart"
RELEASE = "rollback-verifier"
NAMESPACE = "rollback-verifier"

Doc = dict[str, Any]


def run_helm(
    helm_bin: str, *args: str, values: Doc | None = None, tmp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [helm_bin, *args]
    if values is not None:
        assert tmp is not None
        path = tmp / f"values-{len(list(tmp.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def run(helm_bin: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """run(*helm_args, values=None) -> the finished helm process (any exit code)."""

    def _run(*args: str, values: Doc | None = None) -> subprocess.CompletedProcess[str]:
        return run_helm(helm_bin, *args, values=values, tmp=tmp_path)

    return _run


@pytest.fixture
def render(helm_bin: str, tmp_path: Path) -> Callable[..., list[Doc]]:
    """render(values, *extra_args) -> the rendered documents; fails the test if helm fails."""

    def _render(values: Doc | None = None, *extra: str, chart: str | None = None) -> list[Doc]:
        proc = run_helm(
            helm_bin,
            "template",
            RELEASE,
            chart or str(CHART),
            "--namespace",
            NAMESPACE,
            *extra,
            values=values or {},
            tmp=tmp_path,
        )
        assert proc.returncode == 0, f"helm template failed ({proc.returncode}):\n{proc.stderr}"
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return _render


@pytest.fixture
def render_error(helm_bin: str, tmp_path: Path) -> Callable[[Doc], str]:
    """render_error(values) -> helm's stderr; fails the test unless helm exits non-zero."""

    def _render_error(values: Doc) -> str:
        proc = run_helm(
            helm_bin, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values, tmp=tmp_path
        )
        assert proc.returncode != 0, f"helm accepted values it must reject: {values}\n{proc.stdout[:2000]}"
        assert proc.stdout == ""
        return proc.stderr

    return _render_error
