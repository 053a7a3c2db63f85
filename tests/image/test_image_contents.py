"""The image built from the Dockerfile: its config, what the chart relies on, and what it must not carry."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.image.conftest import OUTPUT, image_config
from tests.image.pod import Image, one, render_chart
from tests.image.runtime_spec import container_of, pod_spec_of

CACHE = "/var/cache/rollback-verifier"


def test_the_image_runs_the_operator_as_user_10001(built_image: dict[str, str]) -> None:
    config = image_config(OUTPUT / "oci", built_image["TAG"])["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["rollback-verifier"]
    assert config["Cmd"] == ["run"]
    assert config["WorkingDir"] == "/tmp"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HOME"] == "/tmp" and env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only: no .pyc written at run time
    assert "8080/tcp" in config["ExposedPorts"]


def test_the_charts_security_context_matches_the_images_user(built_image: dict[str, str], tmp_path: Path) -> None:
    deployment = one(render_chart({}, "agents", tmp_path), "Deployment")
    user, group = image_config(OUTPUT / "oci", built_image["TAG"])["config"]["User"].split(":")
    pod_sc = pod_spec_of(deployment)["securityContext"]
    sc = container_of(deployment, "operator")["securityContext"]
    assert (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]) == (int(user), int(group), int(group))
    assert (sc["runAsUser"], sc["runAsGroup"]) == (int(user), int(group))
    mounts = {m["mountPath"] for m in container_of(deployment, "operator")["volumeMounts"]}
    assert {"/tmp", CACHE} <= mounts, "the chart gives the image the two folders it writes to"


def test_the_cache_folder_belongs_to_the_operator_and_the_venv_is_compiled(image: Image) -> None:
    cache = image.rootfs / CACHE.lstrip("/")
    assert (cache.stat().st_uid, cache.stat().st_gid) == (10001, 10001)
    assert (image.rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    # Compiled at build time (a read-only root cannot cache bytecode): the operator's modules have .pyc.
    package = next((image.rootfs / "opt/venv/lib").glob("python3*/site-packages/rollback_verifier"))
    assert list((package / "cli" / "__pycache__").glob("main.*.pyc"))


def test_the_runtime_venv_carries_no_installer_and_no_unused_async_client(image: Image) -> None:
    site = next((image.rootfs / "opt/venv/lib").glob("python3*/site-packages"))
    assert (site / "kubernetes" / "client").is_dir()
    for removed in ("kubernetes/aio", "pip", "setuptools"):
        assert not (site / removed).exists(), f"{removed} is in the image"
    assert not (image.rootfs / "opt/venv/bin/pip").exists()


def pem_bodies(path: Path) -> list[str]:
    """The base64 body of each certificate in a PEM file, as one line."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", path.read_text(), re.S)
    return ["".join(block.split()) for block in blocks]


def test_the_build_machines_pip_ca_leaves_no_trace(image: Image, built_image: dict[str, str]) -> None:
    """The build mounts pip's CA bundle and a pip.conf over /root for its RUN steps only."""
    for leftover in ("etc/pip.conf", "etc/xdg/pip", "root/.config", "root/.cache"):
        assert not (image.rootfs / leftover).exists(), f"/{leftover} is in the image"
    history = json.dumps(image_config(OUTPUT / "oci", built_image["TAG"]).get("history", []))
    assert "ca.crt" not in history and "pip.conf" not in history
    # The CAs this machine added to its trust store (a TLS-intercepting proxy's among them) are in
    # no file of the image: its CA bundle is Debian's own.
    bundle = "".join(pem_bodies(image.rootfs / "etc/ssl/certs/ca-certificates.crt"))
    assert len(bundle) > 10_000, "the image has Debian's CA bundle"
    for added in sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt")):
        for body in pem_bodies(added):
            assert body not in bundle, f"{added} is in the image's CA bundle"
            first_line = body[:64]  # as a PEM file would hold it
            found = subprocess.run(
                ["grep", "-rlF", first_line, str(image.rootfs)], capture_output=True, text=True, check=False
            )
            assert found.stdout == "", f"{added} is in the image: {found.stdout}"
