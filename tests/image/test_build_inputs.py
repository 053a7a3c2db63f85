"""`make image` on a machine that cannot build: a one-line reason, a non-zero exit, and no image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image.conftest import BUILD


def build(tmp_path: Path, env: dict[str, str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    settings = {
        "RV_CACHE_DIR": str(tmp_path / "cache"),
        "RV_IMAGE_OUT": str(tmp_path / "out" / "image"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),  # buildah's run-time state: gone with the test's folder
        **env,
    }
    return subprocess.run(
        [*(prefix or []), str(BUILD)],
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def assert_refused(proc: subprocess.CompletedProcess[str], tmp_path: Path, reason: str) -> None:
    assert proc.returncode != 0
    assert reason in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "image").exists(), "a failed build left an image behind"
    assert not list((tmp_path / "out").glob("image.tmp.*")), "a failed build left its scratch folder behind"


def test_no_container_engine_is_a_clear_error(tmp_path: Path) -> None:
    # Only the tools the script needs besides an engine are on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "head", "mkdir", "mktemp", "rm", "date", "id", "awk", "sort", "python3"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    proc = build(tmp_path, {"PATH": str(bin_dir)})
    assert_refused(proc, tmp_path, "no container engine: install Docker (with a running daemon) or buildah")


def test_an_unknown_engine_is_a_clear_error(tmp_path: Path) -> None:
    proc = build(tmp_path, {"RV_IMAGE_ENGINE": "podman"})
    assert_refused(proc, tmp_path, "RV_IMAGE_ENGINE must be auto, docker or buildah, not 'podman'")


def test_buildah_without_root_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("this test drops root with setpriv: run it as root", pytrace=False)
    tmp_path.chmod(0o777)
    proc = build(
        tmp_path,
        {"RV_IMAGE_ENGINE": "buildah", "HOME": str(tmp_path)},
        prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    )
    assert_refused(proc, tmp_path, "building with buildah needs root here")


def test_an_unreachable_debian_mirror_fails_the_base_image_and_leaves_no_image(tmp_path: Path) -> None:
    """No registry and a Debian mirror that does not answer: the stand-in base cannot be made."""
    proc = build(
        tmp_path,
        {"RV_IMAGE_ENGINE": "buildah", "RV_IMAGE_BASE": "debian", "RV_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"},
    )
    assert_refused(proc, tmp_path, "debootstrap of Debian bookworm from http://127.0.0.1:9/debian failed")
    assert "the base image docker.io/library/python:3.11-slim could not be made from Debian" in proc.stderr
    storage = ["buildah", "--root", str(tmp_path / "cache/containers/storage"), "--runroot", str(tmp_path / "run")]
    listed = subprocess.run([*storage, "images", "--noheading"], capture_output=True, text=True, check=False)
    assert listed.stdout.strip() == "", f"a half-made base image is in the storage: {listed.stdout}"


def test_a_machine_without_a_debian_mirror_is_told_how_to_name_one(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    proc = build(tmp_path, {"RV_IMAGE_ENGINE": "buildah", "RV_IMAGE_BASE": "debian", "RV_APT_DIR": str(apt)})
    assert_refused(proc, tmp_path, f"no Debian mirror in {apt}/sources.list{{,.d}}: set RV_DEBIAN_MIRROR")
