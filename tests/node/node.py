"""A real node joined to the local cluster: containerd (Debian's) and kubelet (built with the cluster
binaries), started by hand in a scratch folder, with Debian's CNI bridge + host-local plugins.

What this VM needs (docs/container-image.md): cgroupfs on hybrid cgroup v1, no swap
check, no CAP_SYS_RESOURCE (so containerd must not set a negative oom_score_adj), a node IP that is
not loopback (the apiserver's certificate names the machine's IPs), and a taint, so that only pods
that ask for the real node land on it (the e2e tests' fake pods stay on KWOK's nodes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

from harness.support import Cluster, free_port, stop_process

from rollback_verifier.tools import find_tool

CNI_PLUGINS = Path("/usr/lib/cni")
POD_LOGS = Path("/var/log/pods")  # kubelet's, not configurable
TAINT_KEY = "rollback-verifier.test/real-node"


def node_ip() -> str:
    """The address this machine reaches the outside with: in the apiserver certificate's SANs."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's source address
        return str(s.getsockname()[0])


def _network_namespaces() -> list[str]:
    return [p.name for p in Path("/run/netns").glob("cni-*")]


def _pod_log_folders() -> list[str]:
    return [p.name for p in POD_LOGS.glob("*")]


class RealNode:
    def __init__(self, cluster: Cluster, folder: Path) -> None:
        self.cluster = cluster
        self.id = uuid.uuid4().hex[:6]
        self.name = f"rv-node-{self.id}"
        self.folder = folder
        self.run_dir = Path("/run") / self.name  # unix socket paths must stay short
        self.socket = self.run_dir / "containerd.sock"
        self.bridge = f"rvbr{self.id}"
        self.ip = node_ip()
        self.kubelet_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._netns_before: set[str] = set()
        self._pod_logs_before: set[str] = set()
        self._logs: dict[str, IO[bytes]] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, sandbox_image: str, timeout: float = 90) -> None:
        self._netns_before, self._pod_logs_before = set(_network_namespaces()), set(_pod_log_folders())
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._start("containerd", ["containerd", "--config", str(self._containerd_config(sandbox_image))])
        Cluster.wait_for(lambda: self.ctr("version", check=False).returncode == 0, 30, "containerd's socket")
        self._start("kubelet", [find_tool("kubelet"), *self._kubelet_args()])
        Cluster.wait_for(self._ready, timeout, f"node {self.name} to be Ready", interval=0.5)

    def stop(self) -> None:
        """Pods first (kubelet stops their containers, tears their sandboxes' network down and
        removes their logs), then kubelet, the containers left, containerd and the shims it
        started, and whatever the node left on the machine: the bridge, network namespaces, logs."""
        self.cluster.kubectl(
            "delete", "pods", "-A", "--field-selector", f"spec.nodeName={self.name}", "--timeout=60s", check=False
        )
        self.cluster.kubectl("delete", "node", self.name, "--wait=false", check=False)
        self._stop("kubelet")
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        shims = self._shim_pids()
        self._stop("containerd")
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)
        for netns in set(_network_namespaces()) - self._netns_before:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
        for pod_logs in set(_pod_log_folders()) - self._pod_logs_before:
            shutil.rmtree(POD_LOGS / pod_logs, ignore_errors=True)
        for mount in reversed(self._mounts_below(self.folder, self.run_dir)):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for log in self._logs.values():
            log.close()

    def _start(self, name: str, args: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self._logs[name] = log
        self.processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _stop(self, name: str) -> None:
        process = self.processes.get(name)
        if process is not None:
            stop_process(process, timeout=30)

    def _shim_pids(self) -> list[int]:
        """The shims of our containerd: they name its socket, unique to this node, in their arguments."""
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                args = cmdline.read_bytes().split(b"\0")
                if args[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in args:
                    pids.append(int(cmdline.parent.name))
        return pids

    @staticmethod
    def _mounts_below(*folders: Path) -> list[str]:
        with open("/proc/self/mountinfo") as info:
            points = [line.split()[4] for line in info]
        return [p for p in points if any(p.startswith(f"{f}/") for f in folders)]

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- containerd -------------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed: {proc.stderr}")
        return proc

    def import_image(self, archive: Path) -> None:
        self.ctr("images", "import", str(archive))

    def _containerd_config(self, sandbox_image: str) -> Path:
        cni = self.folder / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        subnet = f"10.{200 + int(self.id[:2], 16) % 50}.{int(self.id[2:4], 16)}.0/24"
        conflist = {
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(cni / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (cni / "net.d" / "10-bridge.conflist").write_text(json.dumps(conflist, indent=1))
        config = f"""version = 2
root = "{self.folder / "containerd"}"
state = "{self.run_dir / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.run_dir / "containerd-ttrpc.sock"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # This VM's root lacks CAP_SYS_RESOURCE: the pause container's oom_score_adj of -998 fails otherwise.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni / "net.d"}"
"""
        path = self.folder / "containerd.toml"
        path.write_text(config)
        return path

    # -- kubelet ----------------------------------------------------------------------------------

    def _kubelet_args(self) -> list[str]:
        ca = json.loads(self.cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
        ca_file = self.folder / "cluster-ca.crt"
        ca_file.write_bytes(base64.b64decode(ca["clusters"][0]["cluster"]["certificate-authority-data"]))
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "failCgroupV1": False,
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "address": self.ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {"anonymous": {"enabled": False}, "x509": {"clientCAFile": str(ca_file)}},
            "authorization": {"mode": "AlwaysAllow"},
            "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
        }
        path = self.folder / "kubelet.json"
        path.write_text(json.dumps(config, indent=1))
        return [
            f"--config={path}",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.ip}",
            f"--root-dir={self.folder / 'kubelet'}",
            f"--cert-dir={self.folder / 'kubelet-pki'}",
            "--v=1",
        ]

    def kubelet_get(self, path: str) -> str:
        """GET from kubelet's own HTTPS server (the apiserver's node proxy would dial the node's
        name, which does not resolve here), as the cluster admin; kubelet's certificate is its own."""
        config = json.loads(
            self.cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout
        )
        user = config["users"][0]["user"]
        cert, key = self.folder / "admin.crt", self.folder / "admin.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        key.chmod(0o600)
        context = ssl.create_default_context(cafile=str(self.folder / "kubelet-pki" / "kubelet.crt"))
        context.check_hostname = False
        context.load_cert_chain(str(cert), str(key))
        url = f"https://{self.ip}:{self.kubelet_port}{path}"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return str(response.read().decode())

    def _ready(self) -> bool:
        for name in ("containerd", "kubelet"):
            if self.processes[name].poll() is not None:
                raise AssertionError(f"{name} exited with {self.processes[name].returncode}:\n{self.log(name)[-4000:]}")
        proc = self.cluster.kubectl("get", "node", self.name, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
