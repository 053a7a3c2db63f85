"""The Deployment -> runc spec translation, on plain data (no root, no runc)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.image.runtime_spec import (
    SERVICE_ACCOUNT_MOUNT,
    NotTranslated,
    Pod,
    parse_quantity,
    runtime_spec,
    seccomp_from_containers_profile,
)

IMAGE_CONFIG = {
    "User": "10001:10001",
    "Env": ["PATH=/opt/venv/bin:/usr/bin", "HOME=/tmp"],
    "Entrypoint": ["rollback-verifier"],
    "Cmd": ["run"],
    "WorkingDir": "/tmp",
}
BASE = {
    "ociVersion": "1.0.0",
    "process": {"args": ["ignored"]},
    "root": {"path": "rootfs"},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup"},
    ],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}], "maskedPaths": ["/proc/kcore"]},
}
PROFILE = {"type": "RuntimeDefault"}
DEPLOYMENT: dict[str, Any] = {
    "spec": {
        "template": {
            "spec": {
                "serviceAccountName": "rv",
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 2000,
                    "seccompProfile": PROFILE,
                },
                "containers": [
                    {
                        "name": "operator",
                        "image": "x",
                        "args": ["run", "--namespace=a"],
                        "env": [
                            {"name": "HOME", "value": "/tmp"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "128Mi"},
                            "limits": {"cpu": "500m", "memory": "512Mi"},
                        },
                        "volumeMounts": [
                            {"name": "settings", "mountPath": "/etc/rv", "readOnly": True},
                            {"name": "cache", "mountPath": "/var/cache/rv"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "settings", "configMap": {"name": "s"}},
                    {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                ],
            }
        }
    }
}


def pod(**extra: Any) -> Pod:
    values: dict[str, Any] = {
        "name": "rv-abc",
        "namespace": "agents",
        "volumes": {"settings": Path("/host/settings"), "cache": Path("/host/cache")},
        "network_namespace": Path("/run/netns/x"),
        "api_host": "127.0.0.1",
        "api_port": 6443,
        "service_account_dir": Path("/host/sa"),
        "seccomp_runtime_default": {"defaultAction": "SCMP_ACT_ERRNO"},
    }
    return Pod(**{**values, **extra})


def spec(deployment: dict[str, Any] | None = None, **pod_extra: Any) -> dict[str, Any]:
    return runtime_spec(
        BASE,
        image_config=IMAGE_CONFIG,
        deployment=deployment or DEPLOYMENT,
        container_name="operator",
        pod=pod(**pod_extra),
        rootfs=Path("/b/rootfs"),
    )


def changed(path: list[str | int], value: Any) -> dict[str, Any]:
    deployment = copy.deepcopy(DEPLOYMENT)
    target: Any = deployment
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return deployment


CONTAINER = ["spec", "template", "spec", "containers", 0]
POD = ["spec", "template", "spec"]


def test_args_replace_the_images_cmd_and_keep_its_entrypoint() -> None:
    assert spec()["process"]["args"] == ["rollback-verifier", "run", "--namespace=a"]
    with_command = changed([*CONTAINER, "command"], ["python", "-m", "x"])
    assert spec(with_command)["process"]["args"] == ["python", "-m", "x", "run", "--namespace=a"]


def test_env_has_the_image_env_the_charts_env_with_fields_resolved_and_the_apiserver() -> None:
    env = dict(e.split("=", 1) for e in spec()["process"]["env"])
    assert env["PATH"] == "/opt/venv/bin:/usr/bin"
    assert (env["POD_NAME"], env["POD_NAMESPACE"], env["HOME"]) == ("rv-abc", "agents", "/tmp")
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("127.0.0.1", "6443")
    secret_env = changed([*CONTAINER, "env"], [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    with pytest.raises(NotTranslated, match="secretKeyRef"):
        spec(secret_env)


def test_the_security_context_becomes_user_groups_capabilities_and_a_read_only_root() -> None:
    out = spec()
    assert out["process"]["user"] == {"uid": 10001, "gid": 10001, "additionalGids": [2000]}
    assert out["process"]["noNewPrivileges"] is True
    assert all(v == [] for v in out["process"]["capabilities"].values())
    assert out["root"] == {"path": "/b/rootfs", "readonly": True}
    assert out["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ERRNO"}


def test_the_container_context_wins_over_the_pods_and_only_dropped_capabilities_go() -> None:
    deployment = changed([*CONTAINER, "securityContext"], {"runAsUser": 4242, "capabilities": {"drop": ["NET_RAW"]}})
    out = spec(deployment)
    assert (out["process"]["user"]["uid"], out["process"]["user"]["gid"]) == (4242, 10001)
    assert "CAP_NET_RAW" not in out["process"]["capabilities"]["bounding"]
    assert "CAP_CHOWN" in out["process"]["capabilities"]["bounding"]
    assert out["process"]["capabilities"]["effective"] == []  # not root
    assert out["process"]["noNewPrivileges"] is False  # allowPrivilegeEscalation defaults to true
    assert out["root"]["readonly"] is False


def test_run_as_non_root_refuses_uid_0() -> None:
    deployment = changed([*CONTAINER, "securityContext"], {"runAsUser": 0})
    with pytest.raises(ValueError, match="runAsNonRoot"):
        spec(deployment)


def test_limits_become_cgroup_limits_and_requests_cpu_shares() -> None:
    resources = spec()["linux"]["resources"]
    assert resources["cpu"] == {"shares": 51, "period": 100_000, "quota": 50_000}
    assert resources["memory"] == {"limit": 512 * 2**20}
    assert [parse_quantity(q) for q in ("1", "250m", "1Gi", "128M")] == [1, parse_quantity("0.25"), 2**30, 128 * 10**6]


def test_volumes_are_bind_mounts_with_the_service_account_token_and_the_pods_network() -> None:
    out = spec(extra_read_only=[(Path("/host/repo"), "/mnt")])
    mounts = {m["destination"]: m for m in out["mounts"]}
    assert mounts["/etc/rv"]["source"] == "/host/settings" and "ro" in mounts["/etc/rv"]["options"]
    assert mounts["/var/cache/rv"]["source"] == "/host/cache" and "rw" in mounts["/var/cache/rv"]["options"]
    assert mounts[SERVICE_ACCOUNT_MOUNT]["source"] == "/host/sa" and "ro" in mounts[SERVICE_ACCOUNT_MOUNT]["options"]
    assert "ro" in mounts["/mnt"]["options"]
    assert "/sys/fs/cgroup" not in mounts
    assert {"type": "network", "path": "/run/netns/x"} in out["linux"]["namespaces"]
    assert out["hostname"] == "rv-abc"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ([*CONTAINER, "lifecycle"], {"preStop": {}}, "container fields"),
        ([*POD, "hostNetwork"], True, "pod fields"),
        (
            [*POD, "volumes"],
            [{"name": "settings", "secret": {"secretName": "s"}}, {"name": "cache", "emptyDir": {}}],
            "volume",
        ),
        ([*CONTAINER, "securityContext"], {"privileged": True}, "privileged"),
        ([*POD, "securityContext", "seccompProfile"], {"type": "Localhost", "localhostProfile": "x"}, "seccompProfile"),
        ([*CONTAINER, "resources"], {"limits": {"nvidia.com/gpu": 1}}, "resources"),
    ],
)
def test_what_the_chart_may_say_but_is_not_translated_fails_loudly(
    path: list[str | int], value: Any, message: str
) -> None:
    with pytest.raises(NotTranslated, match=message):
        spec(changed(path, value))


def test_the_containers_seccomp_profile_is_selected_for_the_arch_and_capabilities() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}, "excludes": {}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
            {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    out = seccomp_from_containers_profile(profile, caps=[], machine="x86_64")
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert out["defaultErrnoRet"] == 38
    assert [(s["names"][0], s["action"]) for s in out["syscalls"]] == [
        ("read", "SCMP_ACT_ALLOW"),
        ("arch_prctl", "SCMP_ACT_ALLOW"),
        ("chroot", "SCMP_ACT_ERRNO"),
        ("personality", "SCMP_ACT_ALLOW"),
    ]
    assert out["syscalls"][3]["args"] == [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]
    with_chroot = seccomp_from_containers_profile(profile, caps=["CAP_SYS_CHROOT"], machine="x86_64")
    assert ("chroot", "SCMP_ACT_ALLOW") in [(s["names"][0], s["action"]) for s in with_chroot["syscalls"]]
    with pytest.raises(NotTranslated, match="architecture"):
        seccomp_from_containers_profile(profile, caps=[], machine="aarch64")
