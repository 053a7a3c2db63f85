"""The image tests build the image with `make image`'s script (deploy/image/build.sh) once per session
and unpack it with umoci; the tests that run it need root, runc and umoci (.ci/run installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.support import ROOT

from tests.e2e.conftest import cluster, namespace  # noqa: F401 - the e2e suite's cluster, shared
from tests.image.pod import Image

BUILD = ROOT / "deploy" / "image" / "build.sh"
OUTPUT = ROOT / "build" / "image"


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/")


def image_config(layout: Path, tag: str) -> dict[str, Any]:
    """The OCI image config (`config` holds User, Entrypoint, Cmd, Env...) of `tag` in the layout."""
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    manifest = json.loads(blob(layout, entry["digest"]).read_text())
    config: dict[str, Any] = json.loads(blob(layout, manifest["config"]["digest"]).read_text())
    return config


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"the image tests need {', '.join(missing)} (.ci/run installs them: apt-get install {' '.join(missing)})",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("the image tests run the image under runc, which needs root here", pytrace=False)


_built: dict[str, str] = {}  # shared by every conftest that imports the fixture (tests/node's too)


@pytest.fixture(scope="session")
def built_image() -> dict[str, str]:
    """`make image`, once per session: the image's description from build/image/image.env."""
    if _built:
        return _built
    proc = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"make image failed:\n{proc.stderr[-4000:]}", pytrace=False)
    print(proc.stderr)  # the build's summary (size, time) lands in the test log
    _built.update(read_env(OUTPUT / "image.env"))
    return _built


@pytest.fixture(scope="session")
def image(built_image: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The image unpacked by umoci into a runc bundle (shared: every container mounts it read-only)."""
    require("runc", "umoci")
    bundle = tmp_path_factory.mktemp("image") / "bundle"
    proc = subprocess.run(
        ["umoci", "unpack", "--image", f"{OUTPUT / 'oci'}:{built_image['TAG']}", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    config = image_config(OUTPUT / "oci", built_image["TAG"])["config"]
    yield Image(rootfs=bundle / "rootfs", base_spec=json.loads((bundle / "config.json").read_text()), config=config)
    shutil.rmtree(bundle, ignore_errors=True)
