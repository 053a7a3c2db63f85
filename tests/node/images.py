"""Image archives for containerd's `ctr images import`: the operator's image from `make image`'s OCI
layout, and a one-file pause image built from tests/node/pause/pause.go (no registry is reachable)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

PAUSE_SOURCE = Path(__file__).parent / "pause" / "pause.go"
PAUSE_IMAGE = "localhost/rollback-verifier-pause:1"
NAME_ANNOTATION = "io.containerd.image.name"  # the full name ctr gives an imported image
REF_ANNOTATION = "org.opencontainers.image.ref.name"


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def layout_archive(layout: Path, tag: str, image: str, archive: Path) -> None:
    """An OCI archive of `tag` in the layout, named `image` for containerd."""
    index = json.loads((layout / "index.json").read_text())
    entries = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_ANNOTATION) == tag]
    assert len(entries) == 1, f"{tag} is not in {layout}"
    entry = {**entries[0], "annotations": {**entries[0]["annotations"], NAME_ANNOTATION: image}}
    with tarfile.open(archive, "w") as out:
        _add_bytes(out, "oci-layout", (layout / "oci-layout").read_bytes())
        _add_bytes(out, "index.json", json.dumps({**index, "manifests": [entry]}).encode())
        out.add(layout / "blobs", arcname="blobs")


def _blob(archive: tarfile.TarFile, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    _add_bytes(archive, f"blobs/sha256/{digest}", data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def pause_archive(cache: Path) -> Path:
    """The pause image as an OCI archive, built once per pause.go and Go version and cached."""
    go_version, go_arch = subprocess.run(
        ["go", "env", "GOVERSION", "GOARCH"], capture_output=True, text=True, check=True
    ).stdout.split()
    key = hashlib.sha256(PAUSE_SOURCE.read_bytes() + go_version.encode()).hexdigest()[:12]
    archive = cache / f"pause-{key}.oci.tar"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    binary = cache / f"pause-{key}"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "", "GOWORK": "off"}
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), str(PAUSE_SOURCE)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.mtime = 0
        with binary.open("rb") as stream:
            tar.addfile(info, stream)
    layer_bytes = layer.getvalue()
    config = {
        "architecture": go_arch,
        "os": "linux",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]},
    }
    partial = archive.with_suffix(f".{os.getpid()}.tmp")
    with tarfile.open(partial, "w") as out:
        layer_desc = _blob(out, layer_bytes, "application/vnd.oci.image.layer.v1.tar")
        config_desc = _blob(out, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = _blob(out, json.dumps(manifest).encode(), manifest["mediaType"])
        manifest_desc["annotations"] = {NAME_ANNOTATION: PAUSE_IMAGE, REF_ANNOTATION: "1"}
        _add_bytes(out, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add_bytes(out, "index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode())
    partial.replace(archive)
    binary.unlink()
    return archive
