"""An OCI runtime spec (runc's config.json) for one container of a rendered Deployment, as kubelet and
containerd would run it: the pod's and the container's securityContext, resources, args, env and
volumes. Plain functions of plain data (the rendered Deployment, the image's config), so the spec
cannot drift from the chart: whatever the chart says that is not translated here fails loudly
(NotTranslated) instead of being silently ignored.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# containerd's default capability set (what a container gets before `drop`/`add`).
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
# The container and pod fields this module translates or may ignore (scheduling, image pulling and
# probes are kubelet's business, not the runtime's). Anything else in the chart is NotTranslated.
CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "securityContext",
    "resources",
    "volumeMounts",
    "workingDir",
}
POD_FIELDS = {
    "serviceAccountName",
    "automountServiceAccountToken",
    "imagePullSecrets",
    "securityContext",
    "terminationGracePeriodSeconds",
    "containers",
    "volumes",
    "nodeSelector",
    "affinity",
    "tolerations",
}
POD_SECURITY_FIELDS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "supplementalGroups", "seccompProfile"}
CONTAINER_SECURITY_FIELDS = {
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "seccompProfile",
    "privileged",
}
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x", "ppc64le": "ppc64le"}
SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X"}


class NotTranslated(Exception):
    """The chart asks for something this translation does not know how to give a runc container."""


@dataclass
class Pod:
    """What kubelet would know about the pod: its identity, its volumes on the host, its network."""

    name: str
    namespace: str
    volumes: dict[str, Path]  # volume name -> prepared host directory
    network_namespace: Path
    api_host: str
    api_port: int
    pod_ip: str = "127.0.0.1"  # the pod network namespace's address (only loopback in the runc tests)
    service_account_dir: Path | None = None
    seccomp_runtime_default: dict[str, Any] | None = None
    extra_read_only: list[tuple[Path, str]] = field(default_factory=list)  # (host path, container path)


def pod_spec_of(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    unknown = set(spec) - POD_FIELDS
    if unknown:
        raise NotTranslated(f"pod fields {sorted(unknown)}")
    return spec


def container_of(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    containers = pod_spec_of(deployment)["containers"]
    container: dict[str, Any] = next((c for c in containers if c["name"] == name), None) or {}
    if not container:
        raise NotTranslated(f"no container {name!r} (containers: {[c['name'] for c in containers]})")
    unknown = set(container) - CONTAINER_FIELDS
    if unknown:
        raise NotTranslated(f"container fields {sorted(unknown)}")
    return container


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity as a number (`500m` -> 0.5, `512Mi` -> 536870912)."""
    text = str(value)
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", text)
    if not match:
        raise NotTranslated(f"resource quantity {text!r}")
    factor = {
        None: 1,
        "m": Decimal("0.001"),
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }[match.group(2)]
    return Decimal(match.group(1)) * factor


def process_args(image_config: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """Kubernetes' rule: `command` replaces the image's Entrypoint, `args` its Cmd."""
    entrypoint = image_config.get("Entrypoint") or []
    cmd = image_config.get("Cmd") or []
    if "command" in container:
        return [*container["command"], *container.get("args", [])]
    return [*entrypoint, *container.get("args", cmd)]


def process_env(
    image_config: dict[str, Any], container: dict[str, Any], pod: Pod, pod_spec: dict[str, Any]
) -> list[str]:
    env: dict[str, str] = {}
    for item in image_config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    # What kubelet injects for in-cluster config (here: the apiserver itself; no Service VIP).
    env["KUBERNETES_SERVICE_HOST"] = pod.api_host
    env["KUBERNETES_SERVICE_PORT"] = str(pod.api_port)
    fields = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "spec.serviceAccountName": pod_spec.get("serviceAccountName", "default"),
        "status.podIP": pod.pod_ip,
    }
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in item.get("valueFrom", {}) and item["valueFrom"]["fieldRef"]["fieldPath"] in fields:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            raise NotTranslated(f"env {item}")
    if container.get("envFrom"):
        raise NotTranslated("envFrom")
    return [f"{k}={v}" for k, v in env.items()]


def process_user(image_config: dict[str, Any], pod_sc: dict[str, Any], sc: dict[str, Any]) -> dict[str, Any]:
    image_user = str(image_config.get("User") or "0")
    image_uid, _, image_gid = image_user.partition(":")
    if not image_uid.isdigit() or (image_gid and not image_gid.isdigit()):
        raise NotTranslated(f"a non-numeric image user {image_user!r}")
    uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", image_uid)))
    gid = int(sc.get("runAsGroup", pod_sc.get("runAsGroup", image_gid or 0)))
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
        raise ValueError("runAsNonRoot is set but the container would run as uid 0 (kubelet refuses to start it)")
    extra = [int(g) for g in pod_sc.get("supplementalGroups", [])]
    if "fsGroup" in pod_sc:
        extra.append(int(pod_sc["fsGroup"]))
    return {"uid": uid, "gid": gid, "additionalGids": sorted(set(extra))}


def capabilities(sc: dict[str, Any], uid: int) -> dict[str, list[str]]:
    caps = sc.get("capabilities", {})
    dropped = {f"CAP_{c}" for c in caps.get("drop", [])}
    kept = [] if "CAP_ALL" in dropped else [c for c in DEFAULT_CAPABILITIES if c not in dropped]
    kept += [f"CAP_{c}" for c in caps.get("add", []) if f"CAP_{c}" not in kept]
    # A non-root process gets no effective capabilities (as with containerd); the bounding set remains.
    effective = kept if uid == 0 else []
    return {"bounding": kept, "effective": effective, "permitted": effective, "inheritable": [], "ambient": []}


def seccomp(pod_sc: dict[str, Any], sc: dict[str, Any], pod: Pod) -> dict[str, Any] | None:
    profile = sc.get("seccompProfile", pod_sc.get("seccompProfile", {"type": "Unconfined"}))
    if profile["type"] == "Unconfined":
        return None
    if profile["type"] == "RuntimeDefault":
        if pod.seccomp_runtime_default is None:
            raise NotTranslated("seccompProfile RuntimeDefault without a runtime default profile")
        return pod.seccomp_runtime_default
    raise NotTranslated(f"seccompProfile {profile}")


def resources(container: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    limits = container.get("resources", {}).get("limits", {})
    requests = container.get("resources", {}).get("requests", {})
    unknown = (set(limits) | set(requests)) - {"cpu", "memory"}
    if unknown:
        raise NotTranslated(f"resources {sorted(unknown)}")
    cpu: dict[str, int] = {}
    if "cpu" in requests:  # kubelet: shares = milliCPU * 1024 / 1000, at least 2
        cpu["shares"] = max(2, int(parse_quantity(requests["cpu"]) * 1024))
    if "cpu" in limits:
        cpu["period"] = 100_000
        cpu["quota"] = int(parse_quantity(limits["cpu"]) * 100_000)
    if cpu:
        out["cpu"] = cpu
    if "memory" in limits:
        out["memory"] = {"limit": int(parse_quantity(limits["memory"]))}
    return out


def volume_mounts(container: dict[str, Any], pod_spec: dict[str, Any], pod: Pod) -> list[dict[str, Any]]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts = []
    for mount in container.get("volumeMounts", []):
        unknown = set(mount) - {"name", "mountPath", "readOnly"}
        if unknown:
            raise NotTranslated(f"volumeMount fields {sorted(unknown)}")
        volume = volumes[mount["name"]]
        kind = next(k for k in volume if k != "name")
        if kind not in ("configMap", "emptyDir") or volume[kind].get("medium"):
            raise NotTranslated(f"volume {volume}")
        # A read-only configMap mount and an emptyDir are plain bind mounts of kubelet's host folders.
        options = ["rbind", "rprivate", "nosuid", "nodev", "ro" if mount.get("readOnly") else "rw"]
        mounts.append(
            {
                "destination": mount["mountPath"],
                "type": "bind",
                "source": str(pod.volumes[mount["name"]]),
                "options": options,
            }
        )
    if pod_spec.get("automountServiceAccountToken", True):
        if pod.service_account_dir is None:
            raise NotTranslated("automountServiceAccountToken without a service account folder")
        mounts.append(_read_only_bind(pod.service_account_dir, SERVICE_ACCOUNT_MOUNT))
    mounts += [_read_only_bind(source, destination) for source, destination in pod.extra_read_only]
    return mounts


def _read_only_bind(source: Path, destination: str) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": str(source),
        "options": ["rbind", "rprivate", "nosuid", "nodev", "ro"],
    }


def runtime_spec(
    base: dict[str, Any],
    *,
    image_config: dict[str, Any],
    deployment: dict[str, Any],
    container_name: str,
    pod: Pod,
    rootfs: Path,
) -> dict[str, Any]:
    """`base` is umoci's generated config.json (default mounts, masked paths); the rest comes from the
    image's config and the rendered Deployment."""
    pod_spec = pod_spec_of(deployment)
    container = container_of(deployment, container_name)
    pod_sc = pod_spec.get("securityContext", {})
    sc = container.get("securityContext", {})
    for where, given, known in (("pod", pod_sc, POD_SECURITY_FIELDS), ("container", sc, CONTAINER_SECURITY_FIELDS)):
        if set(given) - known:
            raise NotTranslated(f"{where} securityContext fields {sorted(set(given) - known)}")
    if sc.get("privileged"):
        raise NotTranslated("a privileged container")
    user = process_user(image_config, pod_sc, sc)
    spec = {key: value for key, value in base.items() if key not in ("process", "root", "hostname", "linux", "mounts")}
    spec["root"] = {"path": str(rootfs), "readonly": bool(sc.get("readOnlyRootFilesystem", False))}
    spec["hostname"] = pod.name
    spec["process"] = {
        "terminal": False,
        "user": user,
        "args": process_args(image_config, container),
        "env": process_env(image_config, container, pod, pod_spec),
        "cwd": container.get("workingDir") or image_config.get("WorkingDir") or "/",
        "capabilities": capabilities(sc, user["uid"]),
        "noNewPrivileges": sc.get("allowPrivilegeEscalation", True) is False,
    }
    spec["mounts"] = [m for m in base["mounts"] if m["destination"] != "/sys/fs/cgroup"] + volume_mounts(
        container, pod_spec, pod
    )
    linux = dict(base["linux"])
    linux["namespaces"] = [n for n in base["linux"]["namespaces"] if n["type"] != "network"] + [
        {"type": "network", "path": str(pod.network_namespace)}
    ]
    linux["resources"] = resources(container)
    profile = seccomp(pod_sc, sc, pod)
    if profile is not None:
        linux["seccomp"] = profile
    spec["linux"] = linux
    return spec


def seccomp_from_containers_profile(
    profile: dict[str, Any], caps: list[str], machine: str | None = None
) -> dict[str, Any]:
    """containers-common's seccomp.json (Docker's format) as OCI `linux.seccomp` for a process with
    these capabilities on this machine's architecture: the same selection Docker and Podman make."""
    arch = GO_ARCH.get(machine or platform.machine(), machine or platform.machine())
    native = SCMP_ARCH.get(arch)
    arch_map = next((a for a in profile.get("archMap", []) if a["architecture"] == native), None)
    if arch_map is None:
        raise NotTranslated(f"a seccomp profile for architecture {arch}")
    syscalls = []
    for rule in profile["syscalls"]:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("arches") and arch not in includes["arches"]:
            continue
        if includes.get("caps") and not set(includes["caps"]) <= set(caps):
            continue
        if excludes.get("arches") and arch in excludes["arches"]:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & set(caps):
            continue
        call: dict[str, Any] = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            call["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op")} for a in rule["args"]]
        if "errnoRet" in rule:
            call["errnoRet"] = rule["errnoRet"]
        syscalls.append(call)
    out: dict[str, Any] = {
        "defaultAction": profile["defaultAction"],
        "architectures": [native, *arch_map.get("subArchitectures", [])],
        "syscalls": syscalls,
    }
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return out
