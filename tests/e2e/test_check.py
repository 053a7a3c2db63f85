"""`rollback-verifier check`: the one-shot mode, against live Deployments on the real cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.agents import expected, helm_deploy, images, merge
from tests.e2e.support import Cluster


def check(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollback_verifier", "check", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_waits_for_a_helm_rollback_and_exits_0(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    values_a = tmp_path / "a.yaml"
    values_a.write_text(yaml.safe_dump(images("A")))
    helm_deploy(cluster, namespace, images("A"))
    helm_deploy(cluster, namespace, images("B"))
    cluster.helm("rollback", "agents", "1", "-n", namespace)

    proc = check(cluster, "-n", namespace, "-f", str(values_a), "--timeout", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Succeeded (Verified): 2/2 Deployments run the reverted images (digests verified)" in proc.stdout
    assert f"{namespace}/agents-controllers" in proc.stdout


def test_check_exits_1_when_the_controllers_were_not_reverted(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    values_a = tmp_path / "a.yaml"
    values_a.write_text(yaml.safe_dump(images("A")))
    helm_deploy(cluster, namespace, merge(images("A"), {"controllers": {"image": images("B")["image"]}}))
    cluster.rollout_status(namespace, "agents-controllers")

    proc = check(cluster, "-n", namespace, "-f", str(values_a))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Failed (ImageMismatch)" in proc.stdout and expected("B") in proc.stdout


def test_check_explicit_images_and_bad_usage(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    helm_deploy(cluster, namespace, images("A"))
    cluster.rollout_status(namespace, "agents")
    ok = check(
        cluster,
        "-n",
        namespace,
        "--target",
        "agents",
        "--image",
        f"agents={expected('A', 'registry.example/lab/jangar-control-plane')}",
        "--timeout",
        "30",
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    for args, message in [
        (["-n", namespace], "give --values or --image agents=IMAGE"),
        (["-n", namespace, "-f", str(tmp_path / "missing.yaml")], "cannot read values file"),
        (
            ["-n", namespace, "--target", "agents", "--image", "agents=x:1", "--image", "nope=x:1"],
            "names no target: nope",
        ),
        (["-n", namespace, "--target", "agents", "--image", "agents=NOT AN IMAGE"], "target agents:"),
    ]:
        proc = check(cluster, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
