"""Helpers for e2e tests: kubectl and helm against the real local cluster, and bounded waits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rollback_verifier.tools import find_tool

ROOT = Path(__file__).resolve().parents[1]
FINAL_PHASES = ("Succeeded", "Failed")
AGENTS_CHART = ROOT / "tests" / "fixtures" / "charts" / "agents"
CRD_DIR = ROOT / "deploy" / "crds"


@dataclass
class Cluster:
    kubeconfig: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [find_tool("kubectl"), *args],
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def namespaced_watches(self) -> int:
        """WATCHes of Pods and Deployments within a namespace the API server serves now (its own controllers
        watch cluster-wide: these are operators'). A watch of one object by name (a fieldSelector on
        metadata.name, as the operator watches a target Deployment) counts under scope "resource"."""
        total = 0
        for line in self.kubectl("get", "--raw", "/metrics").stdout.splitlines():
            if (
                line.startswith("apiserver_longrunning_requests{")
                and 'verb="WATCH"' in line
                and ('scope="namespace"' in line or 'scope="resource"' in line)
            ) and ('resource="pods"' in line or 'resource="deployments"' in line):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def apply(self, manifest: str, namespace: str | None = None) -> None:
        ns = ["-n", namespace] if namespace else []
        self.kubectl(*ns, "apply", "-f", "-", input=manifest)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [find_tool("helm"), *args], env=self.env, capture_output=True, text=True, timeout=180, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def create_namespace(self, name: str, *, fresh: bool = False) -> str:
        """Create a namespace and wait for its default ServiceAccount (pods need it); `fresh` deletes an
        old one of that name first."""
        if fresh:
            self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=60s")
        self.kubectl("create", "namespace", name)
        self.wait_for(
            lambda: self.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
            timeout=30,
            what=f"the default ServiceAccount of {name}",
        )
        return name

    def install_crd(self) -> None:
        self.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
        self.kubectl("wait", "--for=condition=Established", "crd/rollbackverifications.gitops.proompteng.ai")

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
        """Test-side waiting: bounded, and says what it waited for when it gives up."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def rollout_status(self, namespace: str, deployment: str, timeout: int = 60) -> None:
        self.kubectl("-n", namespace, "rollout", "status", f"deployment/{deployment}", f"--timeout={timeout}s")


def stop_process(process: subprocess.Popen[Any], timeout: float = 20, kill: bool = False) -> None:
    """End a process the tests started: SIGTERM (or SIGKILL), then SIGKILL if it outlives `timeout`."""
    if process.poll() is not None:
        return
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_saw_every_verdict(cluster: Cluster, operator: Operator, count: int) -> None:
    """The positive signal before "nothing changed": the operator's own objects gauge counts `count`
    final verifications (it has listed and judged every one) and it runs no verification job."""
    from prometheus_client.parser import text_string_to_metric_families

    def seen() -> bool:
        families = {f.name: f for f in text_string_to_metric_families(operator.metrics())}
        objects = families.get("rollback_verification_objects")
        final = sum(s.value for s in objects.samples if s.labels.get("phase") in FINAL_PHASES) if objects else 0
        running = families.get("rollback_verification_in_progress")
        return final == count and not (running and any(s.value for s in running.samples))

    cluster.wait_for(seen, timeout=60, what=f"the operator to count {count} final verifications and run none")


@dataclass
class Operator:
    """`rollback-verifier run` as a host process pointed at the cluster."""

    process: subprocess.Popen[str]
    metrics_port: int
    log_path: Path

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self, kill: bool = False) -> None:
        stop_process(self.process, kill=kill)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@contextmanager
def running_operator(
    cluster: Cluster,
    namespaces: list[str],
    tmp: Path,
    settings: Path | None = None,
    extra: list[str] | None = None,
    *,
    port: int | None = None,
    allow_local_repositories: bool = True,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> Iterator[Operator]:
    """The operator as a host process, with `settings` (a file). The tests, the demo and the bench keep
    their git repositories on this machine (file:// URLs): unless told otherwise, the operator is allowed
    to read local repositories, which its default settings refuse. `env` adds to the cluster's
    environment; with wait_ready=False it is handed over as soon as it runs (a caller that measures its
    start-up waits itself)."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"operator-{port}.log"
    args = [sys.executable, "-m", "rollback_verifier", "run", "--metrics-port", str(port)]
    for ns in namespaces:
        args += ["--namespace", ns]
    args += ["--cache-dir", str(tmp / "cache")]
    effective = _with_local_repositories(settings, tmp / f"settings-{port}.yaml", allow_local_repositories)
    args += ["--settings", str(effective)]
    args += extra or []
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        args, env={**cluster.env, **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT, text=True
    )
    op = Operator(proc, port, log_path)
    try:
        if wait_ready:
            start_operator_wait(op)
        yield op
    finally:
        op.stop()
        log_file.close()


def _with_local_repositories(settings: Path | None, copy: Path, allow: bool) -> Path:
    """A copy of `settings` with trust.allowLocalRepositories set, unless the file sets it itself."""
    loaded = (yaml.safe_load(settings.read_text()) or {}) if settings is not None else {}
    if not isinstance(loaded, dict):
        return settings if settings is not None else copy  # a broken file stays broken: tests of that rely on it
    loaded.setdefault("trust", {}).setdefault("allowLocalRepositories", allow)
    copy.write_text(yaml.safe_dump(loaded))
    return copy


def start_operator_wait(op: Operator, timeout: float = 30) -> None:
    import urllib.request

    def ready() -> bool:
        if op.process.poll() is not None:
            raise AssertionError(f"the operator exited with {op.process.returncode}:\n{op.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    Cluster.wait_for(ready, timeout, "the operator's /readyz")
