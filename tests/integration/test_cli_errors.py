"""The CLI's errors and exit codes where no cluster is needed: a cluster that is not there, a broken
kubeconfig, an unknown context, `run` without any kubeconfig, `crds --write` onto odd places.
Every case runs the real command in a subprocess: one line on stderr, its own exit code, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness.support import free_port

from rollback_verifier.api.crd import CRD_FILE_NAME, render_crd

IMAGE = "registry.example/lab/jangar:aaa@sha256:" + "a" * 64


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollback_verifier", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def no_kube_env(tmp_path: Path, kubeconfig: Path | None = None) -> dict[str, str]:
    """An environment with no in-cluster config and only the given kubeconfig (or none at all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["HOME"] = str(tmp_path)
    env["KUBECONFIG"] = str(kubeconfig or tmp_path / "no-such-kubeconfig")
    return env


def kubeconfig_for(server: str, path: Path, context: str = "lab") -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: lab, cluster: {{server: "{server}", insecure-skip-tls-verify: true}}}}]
users: [{{name: lab, user: {{token: not-a-real-token}}}}]
contexts: [{{name: {context}, context: {{cluster: lab, user: lab}}}}]
current-context: {context}
"""
    )
    return path


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


CHECK = ("check", "-n", "agents", "--target", "agents", "--image", f"agents={IMAGE}")


def test_check_against_a_cluster_that_is_not_there_exits_3(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    env = no_kube_env(tmp_path, kubeconfig_for(server, tmp_path / "kubeconfig"))
    line = one_line_error(cli(*CHECK, env=env), 3, f"cannot reach the cluster at {server}")
    assert line.startswith("rollback-verifier check: error: ")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no usable kubeconfig"),  # the file does not exist
        ("just text\n", "no usable kubeconfig"),
        ("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n", "no usable kubeconfig"),
    ],
)
def test_check_with_a_broken_kubeconfig_exits_3(tmp_path: Path, content: str | None, needle: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if content is not None:
        kubeconfig.write_text(content)
    one_line_error(cli(*CHECK, "--kubeconfig", str(kubeconfig), env=no_kube_env(tmp_path)), 3, needle, str(kubeconfig))


def test_check_with_an_unknown_context_exits_3(tmp_path: Path) -> None:
    kubeconfig = kubeconfig_for(f"https://127.0.0.1:{free_port()}", tmp_path / "kubeconfig")
    proc = cli(*CHECK, "--kubeconfig", str(kubeconfig), "--context", "nope", env=no_kube_env(tmp_path))
    one_line_error(proc, 3, "nope")


def test_bad_usage_is_still_2_and_comes_before_any_cluster_access(tmp_path: Path) -> None:
    env = no_kube_env(tmp_path)
    one_line_error(cli("check", "-n", "agents", env=env), 2, "give --values, --application or --image agents=IMAGE")
    one_line_error(
        cli("check", "-n", "agents", "--target", "agents", "--image", "agents=NOT AN IMAGE", env=env),
        2,
        "target agents: ",
    )
    doubled = cli("check", "-n", "agents", "--target", "agents", "--image", "agents=registry.example/x", env=env)
    line = one_line_error(doubled, 2, "pins neither a tag nor a digest")
    assert line.count("target agents") == 1, line
    one_line_error(cli("check", "-n", "agents", "--revision", "abc", env=env), 2, "go with --application")


def test_run_without_a_kubeconfig_exits_3_with_one_line(tmp_path: Path) -> None:
    proc = cli("run", "-n", "agents", "--metrics-port", str(free_port()), env=no_kube_env(tmp_path))
    one_line_error(proc, 3, "no usable kubeconfig", "--kubeconfig")


def test_run_against_a_cluster_that_is_not_there_exits_3(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig = kubeconfig_for(server, tmp_path / "kubeconfig", context="other")
    proc = cli("run", "-n", "agents", "--kubeconfig", str(kubeconfig), "--context", "other", env=no_kube_env(tmp_path))
    one_line_error(proc, 3, f"cannot reach the cluster at {server}")


def test_help_documents_the_exit_codes() -> None:
    for command in ((), ("check",), ("run",)):
        proc = cli(*command, "--help")
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.split())
        assert "3 the cluster could not be reached or read" in text, command
    check_help = " ".join(cli("check", "--help").stdout.split())
    # The default targets are said, not hidden.
    assert "agents=controlPlane.image, agents-controllers=controllers.image,image" in check_help


def test_crds_write_says_what_it_does_and_refuses_what_is_not_a_folder(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "crds"
    proc = cli("crds", "--write", str(fresh))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{fresh / CRD_FILE_NAME}: created the folder and wrote\n"
    assert (fresh / CRD_FILE_NAME).read_text() == render_crd()

    assert cli("crds", "--write", str(fresh)).stdout == f"{fresh / CRD_FILE_NAME}: unchanged\n"
    (fresh / CRD_FILE_NAME).write_text("old copy\n")
    assert cli("crds", "--write", str(fresh)).stdout == f"{fresh / CRD_FILE_NAME}: replaced\n"
    assert (fresh / CRD_FILE_NAME).read_text() == render_crd()

    a_file = tmp_path / "crd.yaml"
    a_file.write_text("mine\n")
    proc = cli("crds", "--write", str(fresh), "--write", str(a_file))
    one_line_error(proc, 2, f"--write {a_file}: not a folder")
    assert a_file.read_text() == "mine\n"  # refused before anything was written
