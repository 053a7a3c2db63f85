"""The Argo CD harness (harness/argocd.py) fails clearly and leaves nothing running: no redis-server,
no argocd binary, a taken port, a component that exits, a component that never opens its port. Real
processes (redis-server, Argo CD's own binary), no cluster: each fails before anything needs one."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.argocd import ArgoCD, ArgoCDError, Component, Ports, free_port
from harness.support import Cluster

NO_CLUSTER = Cluster(Path("/nonexistent/kubeconfig"))


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_no_redis_server_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argo = ArgoCD(NO_CLUSTER, tmp_path)  # finds argocd through $RV_BIN_DIR
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no redis-server
    with pytest.raises(ArgoCDError, match=r"redis-server is not installed .*apt-get install redis-server"):
        argo.start()
    assert argo._running == []


def test_no_argocd_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RV_BIN_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ArgoCDError, match=r"no argocd binary: .*build-binaries.sh"):
        ArgoCD(NO_CLUSTER, tmp_path)


def test_a_taken_port_is_named_and_nothing_keeps_running(tmp_path: Path, taken: int) -> None:
    free = Ports.free()
    argo = ArgoCD(NO_CLUSTER, tmp_path, ports=dataclasses.replace(free, repo_server=taken))
    with pytest.raises(ArgoCDError, match=rf"port {taken} for Argo CD's repo-server is taken"):
        argo.start()
    assert argo._running == []
    # redis was started first and is stopped again: its port is free.
    with socket.socket() as s:
        s.bind(("127.0.0.1", free.redis))


def test_a_component_that_exits_shows_its_log(tmp_path: Path) -> None:
    argo = ArgoCD(NO_CLUSTER, tmp_path)
    broken = Component("repo-server", ["--no-such-flag"], free_port(), "argocd-repo-server")
    with pytest.raises(ArgoCDError, match=r"(?s)repo-server exited with \d+; log .*repo-server.log.*no-such-flag"):
        argo.start_component(broken)
    assert argo._running == []


def test_a_component_that_never_opens_its_port_is_stopped(tmp_path: Path) -> None:
    argo = ArgoCD(NO_CLUSTER, tmp_path, start_timeout=1)
    silent = Component("silent", ["sleep", "60"], free_port())
    with pytest.raises(ArgoCDError, match=r"silent did not open port \d+ within 1s"):
        argo.start_component(silent)
    assert argo._running == []
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    sleeping = [p for p in pids if _cmdline(p) == ["sleep", "60"] and _parent(p) == os.getpid()]
    assert sleeping == [], "the process was left running"


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def _parent(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
