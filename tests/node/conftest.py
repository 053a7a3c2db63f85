"""A real kubelet + containerd node joined to the e2e suite's cluster, with the operator's image (from
`make image`) and a local pause image imported. Needs root, containerd, runc and the CNI plugins
(.ci/run installs them) and kubelet from the cluster binaries."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.support import Cluster

from rollback_verifier.tools import ToolMissing, find_tool
from tests.e2e.conftest import cluster, namespace  # noqa: F401 - the e2e suite's cluster, shared
from tests.image.conftest import OUTPUT, built_image  # noqa: F401 - `make image`, once per session
from tests.node.images import PAUSE_IMAGE, layout_archive, pause_archive
from tests.node.node import CNI_PLUGINS, RealNode

CACHE = Path(os.environ.get("RV_CACHE_DIR", Path.home() / ".cache" / "rollback-verifier")) / "node"


@pytest.fixture(scope="session")
def real_node(
    cluster: Cluster,  # noqa: F811
    built_image: dict[str, str],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealNode]:
    if os.geteuid() != 0:
        pytest.fail("the real node (containerd, kubelet) needs root", pytrace=False)
    missing = [t for t in ("containerd", "ctr", "runc", "ip") if shutil.which(t) is None]
    if missing or not (CNI_PLUGINS / "bridge").exists():
        pytest.fail(
            f"the real node needs containerd, runc and the CNI plugins (missing: {missing or ['/usr/lib/cni/bridge']}; "
            ".ci/run installs them: apt-get install containerd runc containernetworking-plugins iproute2)",
            pytrace=False,
        )
    try:
        find_tool("kubelet")
    except ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    folder = tmp_path_factory.mktemp("node")
    node = RealNode(cluster, folder)
    try:
        node.start(sandbox_image=PAUSE_IMAGE)
        node.import_image(pause_archive(CACHE))
        archive = folder / "operator.oci.tar"
        image = f"{built_image['IMAGE']}:{built_image['TAG']}"
        layout_archive(OUTPUT / "oci", built_image["TAG"], image, archive)
        node.import_image(archive)
        archive.unlink()
        yield node
    except BaseException:
        for name in ("containerd", "kubelet"):
            print(f"----- {name} (last lines)\n{node.log(name)[-3000:]}")
        raise
    finally:
        node.stop()
