"""The chart's pod, run from the image under runc: what kubelet would do for it, done by hand.

The chart is rendered by real helm; its Deployment becomes the runtime spec (runtime_spec.py); its
ConfigMap, emptyDirs and ServiceAccount token become host folders mounted as kubelet mounts them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness.support import ROOT, Cluster

from rollback_verifier.tools import find_tool
from tests.image.netns import NetworkNamespace
from tests.image.runtime_spec import Pod, container_of, pod_spec_of, runtime_spec, seccomp_from_containers_profile

CHART = ROOT / "deploy" / "chart"
RELEASE = "rv"
CONTAINER = "operator"
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")  # containers-common, next to buildah


@dataclass
class Image:
    """The image unpacked by umoci: its root filesystem, umoci's spec and the image's config."""

    rootfs: Path
    base_spec: dict[str, Any]
    config: dict[str, Any]


def render_chart(values: dict[str, Any], namespace: str, tmp: Path) -> list[dict[str, Any]]:
    values_file = tmp / "chart-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [find_tool("helm"), "template", RELEASE, str(CHART), "-n", namespace, "-f", str(values_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def one(rendered: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in rendered if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in the rendered chart, found {len(found)}"
    return found[0]


def prepare_volumes(rendered: list[dict[str, Any]], deployment: dict[str, Any], root: Path) -> dict[str, Path]:
    """Kubelet's host folders for the pod's volumes: a configMap's keys as files (mode 0644), an
    emptyDir empty with mode 0777; with fsGroup, group-owned by it and setgid, as kubelet does."""
    spec = pod_spec_of(deployment)
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    folders = {}
    for volume in spec.get("volumes", []):
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        if "configMap" in volume:
            config_map = one(rendered, "ConfigMap", volume["configMap"]["name"])
            mode = volume["configMap"].get("defaultMode", 0o644)
            for key, text in config_map.get("data", {}).items():
                (folder / key).write_text(text)
                (folder / key).chmod(mode)
                if fs_group is not None:
                    os.chown(folder / key, 0, fs_group)
            folder.chmod(0o755)
        elif "emptyDir" in volume:
            folder.chmod(0o777)
        else:
            raise AssertionError(f"no host folder for volume {volume}")
        if fs_group is not None:
            os.chown(folder, 0, fs_group)
            folder.chmod(folder.stat().st_mode | 0o2000)
        folders[volume["name"]] = folder
    return folders


def service_account_folder(cluster: Cluster, namespace: str, account: str, root: Path) -> Path:
    """The projected token volume: a token of the chart's ServiceAccount, the cluster CA, the namespace."""
    folder = root / "serviceaccount"
    folder.mkdir(parents=True)
    token = cluster.kubectl("-n", namespace, "create", "token", account, "--duration=1h").stdout.strip()
    ca = cluster.get("-n", namespace, "configmap", "kube-root-ca.crt")["data"]["ca.crt"]
    for name, text in (("token", token), ("ca.crt", ca), ("namespace", namespace)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o644)
    return folder


def api_server(cluster: Cluster) -> str:
    config = json.loads(cluster.kubectl("config", "view", "--minify", "-o", "json").stdout)
    server: str = config["clusters"][0]["cluster"]["server"]
    return server


def runtime_default_seccomp() -> dict[str, Any]:
    """RuntimeDefault, approximated by containers-common's profile (what Podman uses) for a process
    without capabilities; containerd's built-in default differs in details."""
    return seccomp_from_containers_profile(json.loads(SECCOMP_PROFILE.read_text()), caps=[])


class RuncContainer:
    """One container under runc, with its own state folder; its output goes to a log file."""

    def __init__(self, spec: dict[str, Any], folder: Path) -> None:
        self.id = f"rv-{uuid.uuid4().hex[:10]}"
        self.folder = folder
        self.state = folder / "runc-state"
        self.bundle = folder / "bundle"
        self.bundle.mkdir(parents=True)
        self.spec = {**spec, "linux": {**spec["linux"], "cgroupsPath": f"/rollback-verifier-tests/{self.id}"}}
        (self.bundle / "config.json").write_text(json.dumps(self.spec, indent=1))
        self.log_path = folder / "container.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def runc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["runc", "--root", str(self.state), *args], capture_output=True, text=True, check=False, timeout=60
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"runc {' '.join(args)} failed: {proc.stderr}")
        return proc

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                ["runc", "--root", str(self.state), "run", "--bundle", str(self.bundle), self.id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def exited(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def stop(self, grace: float) -> tuple[int, float]:
        """SIGTERM, as kubelet sends it; (exit code, seconds to exit). SIGKILL after `grace`."""
        assert self.process is not None
        began = time.monotonic()
        if self.process.poll() is None:
            self.runc("kill", self.id, "TERM", check=False)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.runc("kill", self.id, "KILL", check=False)
                self.process.wait(timeout=30)
        return self.process.returncode, time.monotonic() - began

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.runc("kill", self.id, "KILL", check=False)
            self.process.wait(timeout=30)
        self.runc("delete", "--force", self.id, check=False)
        shutil.rmtree(self.state, ignore_errors=True)


@dataclass
class ChartPod:
    """The chart's operator pod, ready to run: its rendered objects, spec and network namespace."""

    rendered: list[dict[str, Any]]
    deployment: dict[str, Any]
    spec: dict[str, Any]
    netns: NetworkNamespace
    folder: Path

    @property
    def container(self) -> dict[str, Any]:
        return container_of(self.deployment, CONTAINER)

    def port(self, name: str) -> int:
        return int(next(p["containerPort"] for p in self.container["ports"] if p["name"] == name))

    def probe_path(self, probe: str) -> tuple[int, str]:
        get = self.container[probe]["httpGet"]
        port = get["port"] if isinstance(get["port"], int) else self.port(get["port"])
        return port, get["path"]

    def without_mount(self, destination: str) -> dict[str, Any]:
        mounts = [m for m in self.spec["mounts"] if m["destination"] != destination]
        assert len(mounts) == len(self.spec["mounts"]) - 1, f"the chart mounts nothing at {destination}"
        return {**self.spec, "mounts": mounts}


def chart_pod(
    cluster: Cluster,
    image: Image,
    *,
    namespace: str,
    values: dict[str, Any],
    netns: NetworkNamespace,
    folder: Path,
    extra_read_only: list[tuple[Path, str]] | None = None,
) -> ChartPod:
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render_chart(values, namespace, folder)
    deployment = one(rendered, "Deployment")
    account = pod_spec_of(deployment)["serviceAccountName"]
    server = api_server(cluster)
    port = netns.relay_to_host(server)
    pod = Pod(
        name=f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:5]}",
        namespace=namespace,
        volumes=prepare_volumes(rendered, deployment, folder / "volumes"),
        network_namespace=netns.path,
        api_host="127.0.0.1",
        api_port=port,
        service_account_dir=service_account_folder(cluster, namespace, account, folder),
        seccomp_runtime_default=runtime_default_seccomp(),
        extra_read_only=extra_read_only or [],
    )
    spec = runtime_spec(
        image.base_spec,
        image_config=image.config,
        deployment=deployment,
        container_name=CONTAINER,
        pod=pod,
        rootfs=image.rootfs,
    )
    return ChartPod(rendered, deployment, spec, netns, folder)
