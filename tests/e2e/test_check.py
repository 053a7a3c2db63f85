"""`rollback-verifier check`: the one-shot mode, against live Deployments on the real cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import yaml
from harness.agents import VALUES_PATH, GitOpsRepo, expected, helm_deploy, images, merge
from harness.argocd import ArgoCD
from harness.support import Cluster

from rollback_verifier.api.models import RollbackVerificationStatus


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
    # The default targets are said, so that a user of another chart sees what to pass.
    assert "targets: agents=controlPlane.image, agents-controllers=controllers.image,image" in proc.stderr


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
        (["-n", namespace], "give --values, --application or --image agents=IMAGE"),
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


def test_check_output_json_has_the_fields_of_the_cr_status(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    values_a = tmp_path / "a.yaml"
    values_a.write_text(yaml.safe_dump(images("A")))
    helm_deploy(cluster, namespace, images("A"))
    proc = check(cluster, "-n", namespace, "-f", str(values_a), "--timeout", "60", "--output", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)  # stdout is the document alone
    assert RollbackVerificationStatus.model_validate(status)
    assert (status["phase"], status["reason"], status["detectedBy"]) == ("Succeeded", "Verified", "Manual")
    targets = {t["name"]: t for t in status["targets"]}
    assert targets["agents-controllers"]["expectedImages"] == {"controllers": expected("A")}
    assert targets["agents"]["digestsVerified"] and targets["agents"]["availableReplicas"] == 2
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["completedAt"] >= status["startedAt"]

    as_yaml = check(cluster, "-n", namespace, "-f", str(values_a), "-o", "yaml")
    assert as_yaml.returncode == 0 and yaml.safe_load(as_yaml.stdout)["phase"] == "Succeeded"


def test_check_exits_0_every_time_under_load(cluster: Cluster, namespace: str) -> None:
    """`check --timeout` watches in threads; an exit while they ran used to abort (SIGABRT, exit -6) after
    "Succeeded" was printed, on a loaded machine. Many runs in a row, the CPUs kept busy, and pod events
    arriving all along (a Deployment scaled up and down), so that streams are mid-read when check exits."""
    helm_deploy(cluster, namespace, images("A"))
    cluster.rollout_status(namespace, "agents")
    burn = "import time\nend = time.monotonic() + 300\nwhile time.monotonic() < end: pass\n"
    load = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(os.cpu_count() or 2)]
    cluster.kubectl("-n", namespace, "create", "deployment", "churn", "--image=registry.example/x:1", "--replicas=0")
    stop = threading.Event()

    def churn() -> None:
        replicas = 0
        while not stop.is_set():
            replicas = 3 - replicas
            cluster.kubectl("-n", namespace, "scale", "deployment", "churn", f"--replicas={replicas}", check=False)
            stop.wait(0.3)

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    image = f"agents={expected('A', 'registry.example/lab/jangar-control-plane')}"
    try:
        for run in range(RUNS_UNDER_LOAD):
            proc = check(cluster, "-n", namespace, "--target", "agents", "--image", image, "--timeout", "30")
            assert proc.returncode == 0, (run, proc.returncode, proc.stdout, proc.stderr)
            assert "Succeeded (Verified)" in proc.stdout, (run, proc.stdout)
            assert "Fatal Python error" not in proc.stderr and "Traceback" not in proc.stderr, (run, proc.stderr)
    finally:
        stop.set()
        churner.join(timeout=30)
        for p in load:
            p.kill()
            p.wait()


RUNS_UNDER_LOAD = 10  # each run ~3-6 s on an idle 2-core CI machine, ~20 s on a shared one


def _kubeconfig_with_token(cluster: Cluster, token: str, path: Path) -> Path:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "limited", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "limited"
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_denied_by_rbac_exits_3_with_one_line(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "nobody")
    token = cluster.kubectl("-n", namespace, "create", "token", "nobody", "--duration=10m").stdout.strip()
    kubeconfig = _kubeconfig_with_token(cluster, token, tmp_path / "kubeconfig")
    image = f"agents={expected('A', 'registry.example/lab/jangar-control-plane')}"
    proc = check(cluster, "-n", namespace, "--target", "agents", "--image", image, "--kubeconfig", str(kubeconfig))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "error" in line]
    assert line.startswith("rollback-verifier check: error: access denied (403 Forbidden): ")
    assert f"system:serviceaccount:{namespace}:nobody" in line and "deployments" in line


def test_check_kubeconfig_and_context(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    helm_deploy(cluster, namespace, images("A"))
    cluster.rollout_status(namespace, "agents")
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["contexts"][0]["name"] = "lab"
    config["current-context"] = "missing"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    image = f"agents={expected('A', 'registry.example/lab/jangar-control-plane')}"
    args = ("-n", namespace, "--target", "agents", "--image", image, "--kubeconfig", str(kubeconfig))
    ok = check(cluster, *args, "--context", "lab")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    without = check(cluster, *args)
    assert without.returncode == 3 and "Traceback" not in without.stderr, without.stderr


def test_check_application_reads_the_history_entry(
    cluster: Cluster, argocd: ArgoCD, namespace: str, tmp_path: Path
) -> None:
    """`check --application` after a real `argocd app rollback`: the expected images come from the values
    file at the revision of the Application's newest history entry (or the one --revision names)."""
    app = f"check-{namespace.removeprefix('t-')}"
    repo = GitOpsRepo(tmp_path / "gitops")
    repo.seed_chart()
    argocd.create_application(app, repo, namespace)
    try:
        rev_a = repo.commit_values(images("A"), "release A")
        argocd.sync(app, rev_a)
        rev_b = repo.commit_values(images("B"), "release B")
        argocd.sync(app, rev_b)
        rolled_back = argocd.rollback(app)
        assert [h["revision"] for h in rolled_back["status"]["history"]] == [rev_a, rev_b, rev_a]

        args = ("-n", namespace, "--application", app, "--application-namespace", argocd.namespace)
        args += ("--values-path", VALUES_PATH, "--timeout", "60")
        proc = check(cluster, *args, "-o", "json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        status = json.loads(proc.stdout)
        assert (status["phase"], status["revision"]) == ("Succeeded", rev_a)
        assert {t["name"]: t["expectedImages"] for t in status["targets"]}["agents-controllers"] == {
            "controllers": expected("A")
        }

        older = check(cluster, *args[:-2], "--timeout", "5", "--revision", rev_b)  # B's entry: A runs
        assert older.returncode == 1 and "Failed (ImageMismatch)" in older.stdout, older.stdout + older.stderr

        missing = check(cluster, "-n", namespace, "--application", "nope", "--application-namespace", argocd.namespace)
        assert missing.returncode == 2 and f"Application {argocd.namespace}/nope not found" in missing.stderr
    finally:
        argocd.delete_application(app)
