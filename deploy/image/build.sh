#!/usr/bin/env bash
# `make image`: builds the operator's image from the Dockerfile (the one description of the image)
# and writes it as an OCI image layout to build/image/oci (reference: the tag), with
# build/image/image.env describing it. Prints the image's size.
#
# With a running Docker daemon: `docker build`. Without one: buildah (chroot isolation, never
# pulling during the build). When the Dockerfile's base image is neither in buildah's storage nor
# pullable (no registry reachable), a stand-in is made from Debian packages (debian-base.sh) and
# cached in buildah's storage under ~/.cache/rollback-verifier/containers, outside the repo.
#
# Settings (environment): IMAGE (default localhost/rollback-verifier), TAG (default: the package
# version), RV_IMAGE_ENGINE (auto|docker|buildah), RV_IMAGE_BASE (auto|registry|debian: where a
# missing base image comes from), RV_IMAGE_OUT (default build/image), RV_CACHE_DIR,
# RV_DEBIAN_MIRROR and RV_APT_DIR (see debian-base.sh).
#
# Only because of some machines: when pip's configuration names a CA bundle (`cert`, e.g. for a
# TLS-intercepting proxy), the bundle is mounted into the build's RUN steps with a pip.conf naming
# it; mounts are not part of the image, so the image carries no trace of it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
image=${IMAGE:-localhost/rollback-verifier}
tag=${TAG:-$version}
out=${RV_IMAGE_OUT:-$root/build/image}
cache_root=${RV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollback-verifier}
engine=${RV_IMAGE_ENGINE:-auto}
base_source=${RV_IMAGE_BASE:-auto}

say() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }
now() { date +%s; }

case "$engine" in
  auto)
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
    elif command -v buildah >/dev/null; then engine=buildah
    else die "no container engine: install Docker (with a running daemon) or buildah (apt-get install buildah), then retry"
    fi ;;
  docker) docker info >/dev/null 2>&1 || die "RV_IMAGE_ENGINE=docker, but no Docker daemon answers (docker info)" ;;
  buildah) command -v buildah >/dev/null || die "RV_IMAGE_ENGINE=buildah, but buildah is not installed (apt-get install buildah)" ;;
  *) die "RV_IMAGE_ENGINE must be auto, docker or buildah, not '$engine'" ;;
esac
if [ "$engine" = buildah ] && [ "$(id -u)" != 0 ]; then
  die "building with buildah needs root here (rootless buildah needs subuid/subgid ranges); run as root or use Docker"
fi
case "$base_source" in auto | registry | debian) ;; *) die "RV_IMAGE_BASE must be auto, registry or debian, not '$base_source'" ;; esac

# Everything is written to a scratch folder next to the output and moved into place at the end:
# a failed build never leaves a half-written image where the tests or a push would find it.
mkdir -p "$(dirname "$out")"
staging=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$staging"' EXIT
layout="$staging/oci"
started=$(now)

# The external images the Dockerfile's FROM lines name (stages named by `AS` are not images).
base_images() {
  awk 'toupper($1) == "FROM" {
         ref = $2; for (i = 2; i <= NF; i++) if ($i !~ /^--/) { ref = $i; break }
         if (!(ref in stage)) print ref
         for (i = 1; i < NF; i++) if (toupper($i) == "AS") stage[$(i + 1)] = 1
       }' "$root/Dockerfile" | sort -u
}

# The fully qualified name a short Docker Hub name stands for (python:3.11-slim ->
# docker.io/library/python:3.11-slim), the name buildah looks up with --pull-never.
qualified() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then echo "docker.io/library/$ref"
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then echo "docker.io/$ref"
  else echo "$ref"
  fi
}

build_with_docker() {
  say "building $image:$tag with docker"
  docker build -t "$image:$tag" "$root" >&2 || die "docker build failed (output above)"
  mkdir -p "$layout"
  # Docker >= 25 saves an OCI image layout (index.json, oci-layout, blobs/).
  docker save "$image:$tag" | tar -C "$layout" -xf - || die "docker save failed"
  [ -f "$layout/oci-layout" ] || die "this Docker saves no OCI layout (Docker >= 25 needed)"
  base_kind=registry
}

build_with_buildah() {
  local store="$cache_root/containers"
  # Run-time state (locks, mounts) on tmpfs, one folder per storage.
  local runroot
  runroot="${XDG_RUNTIME_DIR:-/run}/rollback-verifier-containers-$(echo "$store" | sha256sum | cut -c1-8)"
  buildah=(buildah --root "$store/storage" --runroot "$runroot")
  export BUILDAH="${buildah[*]}"
  # A change to the stand-in's recipe makes a new stand-in.
  export RV_BASE_RECIPE
  RV_BASE_RECIPE=$(sha256sum "$here/debian-base.sh" | cut -c1-12)
  base_kind=registry
  local ref name recipe
  for ref in $(base_images); do
    name=$(qualified "$ref")
    if recipe=$("${buildah[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "io.rollback-verifier.base-recipe"}}' "$name" 2>/dev/null); then
      if [ -z "$recipe" ]; then continue; fi                   # a real image, pulled earlier
      if [ "$recipe" = "$RV_BASE_RECIPE" ]; then base_kind=debian; continue; fi   # our stand-in, current
      say "the cached stand-in for $name is from an older recipe: making it again"
      "${buildah[@]}" rmi "$name" >/dev/null
    fi
    if [ "$base_source" != debian ] && timeout 600 "${buildah[@]}" pull --quiet "$name" >/dev/null 2>"$staging/pull.err"; then
      say "pulled $name"
      continue
    fi
    [ "$base_source" != registry ] || die "cannot pull $name: $(tail -n 1 "$staging/pull.err")"
    say "no registry reachable for $name ($(tail -n 1 "$staging/pull.err" 2>/dev/null | cut -c1-120))"
    "$here/debian-base.sh" "$name" || die "the base image $name could not be made from Debian (see above)"
    base_kind=debian
  done

  # pip reads ~/.config/pip/pip.conf; /root exists in the base image, so mounting over it creates no
  # mount point in a layer (a mount on a missing path would leave an empty file or folder behind).
  local mounts=()
  local pip_cert=${PIP_CERT:-}
  if [ -z "$pip_cert" ] && command -v pip3 >/dev/null; then pip_cert=$(pip3 config get global.cert 2>/dev/null || true); fi
  if [ -n "$pip_cert" ]; then
    [ -f "$pip_cert" ] || die "pip's configuration names the CA bundle '$pip_cert', which does not exist"
    local home="$staging/build-home"
    mkdir -p "$home/.config/pip"
    cp "$pip_cert" "$home/.config/pip/ca.crt"
    printf '[global]\ncert = /root/.config/pip/ca.crt\n' >"$home/.config/pip/pip.conf"
    mounts=(--volume "$home:/root:ro")
    say "pip's CA bundle ($pip_cert) is mounted into the build's RUN steps (not into the image)"
  fi

  say "building $image:$tag with buildah (base: $base_kind)"
  local build_started
  build_started=$(now)
  "${buildah[@]}" bud --isolation chroot --pull-never --layers --format oci "${mounts[@]}" \
      -f "$root/Dockerfile" -t "$image:$tag" "$root" >"$staging/build.log" 2>&1 || {
    tail -n 40 "$staging/build.log" >&2
    die "buildah bud failed (the build's last lines above)"
  }
  build_seconds=$(($(now) - build_started))
  "${buildah[@]}" push --quiet "$image:$tag" "oci:$layout:$tag" >&2 || die "writing the OCI layout failed"
}

build_seconds=""
base_kind=""
"build_with_$engine"

# Size: the layers as stored (compressed) and unpacked; digests of the manifest and the config.
read -r manifest_digest config_digest compressed unpacked < <(python3 - "$layout" "$tag" <<'PY'
import gzip, json, pathlib, sys, zlib

layout, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
blob = lambda digest: layout / "blobs" / digest.replace(":", "/")
index = json.loads((layout / "index.json").read_text())
entry = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") in (tag, None))
manifest = json.loads(blob(entry["digest"]).read_text())
compressed = unpacked = 0
for layer in manifest["layers"]:
    compressed += layer["size"]
    with blob(layer["digest"]).open("rb") as f:
        stream = gzip.GzipFile(fileobj=f) if "gzip" in layer["mediaType"] else f
        while chunk := stream.read(1 << 20):
            unpacked += len(chunk)
print(entry["digest"], manifest["config"]["digest"], compressed, unpacked)
PY
)
cat >"$staging/image.env" <<EOF
IMAGE=$image
TAG=$tag
ENGINE=$engine
BASE=$base_kind
MANIFEST_DIGEST=$manifest_digest
CONFIG_DIGEST=$config_digest
COMPRESSED_BYTES=$compressed
UNPACKED_BYTES=$unpacked
EOF

rm -rf "$staging/build-home" "$staging/pull.err"
rm -rf "$out.old"
[ ! -e "$out" ] || mv "$out" "$out.old"
mv "$staging" "$out"
rm -rf "$out.old"
trap - EXIT
mb() { echo "$(($1 / 1000000)) MB"; }
say "built $image:$tag ($engine, base: $base_kind) in $(($(now) - started)) s${build_seconds:+ (build step ${build_seconds} s)}: $(mb "$unpacked") unpacked, $(mb "$compressed") compressed"
say "OCI layout: $out/oci (reference $tag); details: $out/image.env"
