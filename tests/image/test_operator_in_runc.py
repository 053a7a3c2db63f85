"""The operator from the image, under runc, as the chart's pod: the chart's securityContext, limits,
args, env and volumes (tests/image/runtime_spec.py translates `helm template`), the chart's
ServiceAccount token with in-cluster config, in a network namespace of its own.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.agents import VALUES_PATH, GitOpsRepo, helm_deploy, images, verification, wait_verdict
from harness.support import Cluster

from rollback_verifier.controller.metrics import Metrics
from tests.image.netns import network_namespace
from tests.image.pod import CHART, RELEASE, ChartPod, Image, RuncContainer, chart_pod

REPO_IN_CONTAINER = "/mnt"  # an empty folder of the image: the bind mount adds nothing to its root


@dataclass
class Scene:
    cluster: Cluster
    namespace: str
    pod: ChartPod
    repo: GitOpsRepo
    served: Path
    folder: Path

    def publish(self) -> None:
        """Push the commits to the bare repository the operator reads, owned by the chart's user."""
        self.repo.git("push", "-q", "served", "main")
        uid = self.pod.spec["process"]["user"]["uid"]
        for path in [self.served, *self.served.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)

    def container(self, spec: dict[str, Any] | None = None, name: str = "operator") -> RuncContainer:
        folder = self.folder / name
        folder.mkdir()
        return RuncContainer(spec or self.pod.spec, folder)

    def http(self, path: str, port: int | None = None) -> tuple[int, str]:
        return self.pod.netns.http_get(port or self.pod.port("metrics"), path)

    def wait_ready(self, container: RuncContainer, timeout: float = 60) -> float:
        """Seconds from `runc run` to the chart's readiness probe answering 200."""
        port, path = self.pod.probe_path("readinessProbe")

        def ready() -> bool:
            if container.exited() is not None:
                raise AssertionError(f"the operator exited with {container.exited()}:\n{container.log()[-3000:]}")
            try:
                return self.pod.netns.http_get(port, path, timeout=1)[0] == 200
            except OSError:
                return False

        Cluster.wait_for(ready, timeout, f"the operator's {path} in the container", interval=0.05)
        return time.monotonic() - container.started_at


@pytest.fixture
def scene(cluster: Cluster, namespace: str, image: Image, tmp_path: Path) -> Iterator[Scene]:
    argocd_namespace = cluster.create_namespace(f"{namespace}-argocd")
    values = {
        "controller": {"namespaces": [namespace]},
        "argocd": {"namespace": argocd_namespace},
        "detection": {"applications": [{"name": "agents", "verificationNamespace": namespace}]},
        # The rollback's values come from a git repository mounted into the container (file://), which the
        # chart's default trust settings refuse.
        "trust": {"allowLocalRepositories": True},
    }
    # The chart's objects for real (CRD, ServiceAccount, Roles, ConfigMap); its Deployment lands on a
    # KWOK node, which runs no process: the process is the runc container below.
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    cluster.helm("install", RELEASE, str(CHART), "-n", namespace, "-f", str(values_file))
    repo = GitOpsRepo(tmp_path / "gitops")
    # What the operator fetches: a bare copy owned by its uid (git refuses a repository owned by
    # someone else: "dubious ownership"), mounted read-only; the tests commit to `repo` and push.
    served = tmp_path / "served.git"
    repo.git("init", "-q", "--bare", str(served))
    repo.git("remote", "add", "served", str(served))
    with network_namespace() as netns:
        pod = chart_pod(
            cluster,
            image,
            namespace=namespace,
            values=values,
            netns=netns,
            folder=tmp_path / "pod",
            extra_read_only=[(served, REPO_IN_CONTAINER)],
        )
        yield Scene(cluster, namespace, pod, repo, served, tmp_path)
    cluster.kubectl("delete", "namespace", argocd_namespace, "--wait=false", check=False)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def container_pid(container: RuncContainer) -> int:
    return int(json.loads(container.runc("state", container.id).stdout)["pid"])


def assert_confined_as_the_chart_says(container: RuncContainer, pod: ChartPod) -> None:
    """What the kernel says about the running operator, against the rendered chart."""
    pid = container_pid(container)
    status = proc_status(pid)
    pod_sc = pod.deployment["spec"]["template"]["spec"]["securityContext"]
    uid, gid, fs_group = pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]
    assert status["Uid"].split() == [str(uid)] * 4
    assert status["Gid"].split() == [str(gid)] * 4
    assert str(fs_group) in status["Groups"].split()
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0  # drop: [ALL]
    assert status["NoNewPrivs"] == "1"  # allowPrivilegeEscalation: false
    assert status["Seccomp"] == "2"  # a seccomp filter (RuntimeDefault)
    root = next(line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
    assert "ro" in root.split()[5].split(","), f"the root filesystem is writable: {root}"
    limits = pod.container["resources"]["limits"]
    cgroup = container.spec["linux"]["cgroupsPath"]
    memory = Path(f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes")
    cpu = next(
        (p for c in ("cpu", "cpu,cpuacct") if (p := Path(f"/sys/fs/cgroup/{c}{cgroup}/cpu.cfs_quota_us")).exists()),
        Path("/sys/fs/cgroup/cpu"),
    )
    if not memory.exists():  # cgroup v2
        memory, cpu = Path(f"/sys/fs/cgroup{cgroup}/memory.max"), Path(f"/sys/fs/cgroup{cgroup}/cpu.max")
    assert memory.read_text().split()[0] == str(pod.spec["linux"]["resources"]["memory"]["limit"]), limits
    assert cpu.read_text().split()[0] == str(pod.spec["linux"]["resources"]["cpu"]["quota"]), limits


def test_the_operator_runs_from_the_image_as_the_charts_pod_and_verifies_a_git_backed_rollback(scene: Scene) -> None:
    cluster, namespace, repo = scene.cluster, scene.namespace, scene.repo
    rev_a = repo.commit_values(images("A"), "release A")
    scene.publish()
    helm_deploy(cluster, namespace, repo.values_at(rev_a))
    helm_deploy(cluster, namespace, images("B"))
    cluster.helm("rollback", "agents", "1", "-n", namespace)

    container = scene.container()
    container.start()
    try:
        seconds = scene.wait_ready(container)
        print(f"operator from the image: /readyz after {seconds:.2f} s")
        assert_confined_as_the_chart_says(container, scene.pod)
        assert scene.http(scene.pod.probe_path("livenessProbe")[1])[0] == 200

        spec = {
            "revision": rev_a,
            "valuesFrom": {"git": {"repoURL": f"file://{REPO_IN_CONTAINER}", "path": VALUES_PATH}},
            "timeoutSeconds": 90,
        }
        cluster.apply(verification("from-the-image", spec), namespace)
        status = wait_verdict(cluster, namespace, "from-the-image", timeout=90)["status"]
        assert (status["phase"], status["reason"]) == ("Succeeded", "Verified"), (status, container.log()[-3000:])
        events = cluster.get("-n", namespace, "events", "--field-selector", "involvedObject.name=from-the-image")
        assert {"Started", "Verified"} <= {e["reason"] for e in events["items"]}

        code, metrics = scene.http("/metrics")
        assert code == 200
        families = {m.name for m in Metrics().registry.collect()}
        assert families and all(f"# TYPE {name}" in metrics for name in families), metrics
        assert re.search(r'rollback_verification_completed_total\{[^}]*phase="Succeeded"[^}]*\} 1\.0', metrics)
        # The git cache went to the chart's cache volume (the root filesystem is read-only).
        assert list((scene.pod.folder / "volumes" / "cache" / "git").glob("*.git"))

        log = container.log()
        assert "Forbidden" not in log and "Traceback" not in log, log[-3000:]
        grace = scene.pod.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        code, took = container.stop(grace)
        print(f"SIGTERM to exit: {took:.2f} s (exit code {code})")
        assert code == 0, f"exit code {code} after SIGTERM:\n{container.log()[-3000:]}"
    finally:
        container.remove()


def test_without_the_charts_cache_volume_the_read_only_root_stops_the_operator(scene: Scene) -> None:
    """The negative control: the read-only root is enforced, so the cache must be the chart's volume."""
    cache = next(m for m in scene.pod.container["volumeMounts"] if m["name"] == "cache")["mountPath"]
    container = scene.container(scene.pod.without_mount(cache), name="no-cache")
    container.start()
    try:
        Cluster.wait_for(
            lambda: "Read-only file system" in container.log(), 60, "the operator to report the read-only file system"
        )
        assert cache in container.log(), container.log()[-3000:]
        port, path = scene.pod.probe_path("readinessProbe")
        with pytest.raises(OSError):
            scene.pod.netns.http_get(port, path, timeout=1)
    finally:
        container.remove()
