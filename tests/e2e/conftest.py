"""The e2e suite runs against the real local cluster (tests/e2e/cluster/cluster.sh).

The session starts its own cluster (named rv-e2e, or $RV_E2E_CLUSTER_NAME so that two checkouts can
test side by side) and tears it down at the end, or uses the cluster whose kubeconfig
$RV_E2E_KUBECONFIG names, and then leaves it alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.argocd import ArgoCD, ArgoCDError
from harness.spoke import Spoke
from harness.support import Cluster

CLUSTER_SH = Path(__file__).parent / "cluster" / "cluster.sh"


def _local_cluster(name: str, given: str | None) -> Iterator[Cluster]:
    """The cluster whose kubeconfig is `given`, left alone; else cluster.sh's cluster `name`, started
    here and stopped at the end (unless RV_KEEP_CLUSTER=1)."""
    if given:
        yield Cluster(Path(given))
        return
    env = {**os.environ, "RV_CLUSTER_NAME": name}
    up = subprocess.run([str(CLUSTER_SH), "up"], env=env, capture_output=True, text=True, check=False)
    if up.returncode != 0:
        subprocess.run([str(CLUSTER_SH), "down"], env=env, capture_output=True, check=False)
        pytest.fail(f"the local cluster {name} did not start:\n{up.stderr[-4000:]}", pytrace=False)
    match = re.search(r"KUBECONFIG=(\S+)", up.stdout)
    assert match, up.stdout
    try:
        yield Cluster(Path(match.group(1)))
    finally:
        if os.environ.get("RV_KEEP_CLUSTER") != "1":
            subprocess.run([str(CLUSTER_SH), "down"], env=env, capture_output=True, check=False)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    yield from _local_cluster(os.environ.get("RV_E2E_CLUSTER_NAME", "rv-e2e"), os.environ.get("RV_E2E_KUBECONFIG"))


@pytest.fixture(scope="session")
def spoke() -> Iterator[Spoke]:
    """A second cluster, the spoke Argo CD deploys to: <cluster name>-spoke, or the one whose kubeconfig
    $RV_E2E_SPOKE_KUBECONFIG names (cluster.sh's <cache>/<name>.kubeconfig: its stem is its name)."""
    given = os.environ.get("RV_E2E_SPOKE_KUBECONFIG")
    name = Path(given).stem if given else f"{os.environ.get('RV_E2E_CLUSTER_NAME', 'rv-e2e')}-spoke"
    for cluster in _local_cluster(name, given):
        yield Spoke(cluster, name)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = cluster.create_namespace(f"t-{uuid.uuid4().hex[:8]}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def argocd(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """Real Argo CD (repo-server, application controller, API server, redis) for the whole session, in
    namespace argocd; tests give their Applications names of their own. Logs: <its home>/logs."""
    try:
        argo = ArgoCD(cluster, tmp_path_factory.mktemp("argocd"))
        argo.install()
        argo.start()
    except ArgoCDError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield argo
    finally:
        argo.stop()
