#!/usr/bin/env bash
# A stand-in for a `python:3.11-slim` base image, made from Debian packages, for machines that can
# reach a Debian mirror but no container registry. Called by build.sh; not needed with a registry.
#
#   debian-base.sh IMAGE_NAME     e.g. docker.io/library/python:3.11-slim
#
# debootstrap's minbase of Debian bookworm (whose python3 is 3.11) with python3, python3-venv and
# `python`, slimmed as Debian's own container images are (no docs, man pages, locales or apt
# caches, also for packages installed later), committed with buildah under IMAGE_NAME so that the
# Dockerfile's FROM resolves to it with --pull-never. The image is committed under a temporary name
# and tagged only once it is complete and checked: a failed build leaves no image behind.
#
# Environment: BUILDAH (the buildah command with its storage flags, from build.sh),
# RV_DEBIAN_MIRROR (default: the first Debian mirror of the apt sources in RV_APT_DIR, /etc/apt),
# RV_BASE_RECIPE (a label value that identifies this recipe, from build.sh).
set -euo pipefail

image=${1:?usage: debian-base.sh IMAGE_NAME}
read -r -a buildah <<<"${BUILDAH:-buildah}"
suite=bookworm
python_version=3.11

say() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }

command -v debootstrap >/dev/null || die "no 'debootstrap' to make the base image from Debian (apt-get install debootstrap)"

# The mirror this machine's apt uses (deb822 sources or the one-line format), unless given.
apt_dir=${RV_APT_DIR:-/etc/apt}
apt_mirror() {
  local f
  for f in "$apt_dir"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' "$f"
  done
  for f in "$apt_dir"/sources.list "$apt_dir"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f"
  done
}
mirror=${RV_DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
[ -n "$mirror" ] || die "no Debian mirror in $apt_dir/sources.list{,.d}: set RV_DEBIAN_MIRROR (e.g. http://deb.debian.org/debian)"
security_mirror=${mirror%/debian}/debian-security
[ "$security_mirror" != "$mirror/debian-security" ] || security_mirror=""

work=$(mktemp -d "${TMPDIR:-/tmp}/rv-debian-base.XXXXXX")
container=""
cleanup() {
  [ -z "$container" ] || "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"

say "making the base image $image from Debian $suite ($mirror); cached afterwards"
if ! debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3 \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap of Debian $suite from $mirror failed (log above); check the mirror (RV_DEBIAN_MIRROR) and the network"
fi

# Debian's container-image settings (as in the official debian:*-slim images): no docs, man pages or
# locales, no apt caches or package lists left in a layer, no services started by package scripts.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d" && chmod 755 "$rootfs/usr/sbin/policy-rc.d"
rm -f "$rootfs/etc/apt/sources.list"
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$suite" "$suite"
  [ -z "$security_mirror" ] ||
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$security_mirror" "$suite"
} >"$rootfs/etc/apt/sources.list.d/debian.sources"

# Security and point-release updates, as a published base image has them.
if ! chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' \
    >"$work/upgrade.log" 2>&1; then
  tail -n 20 "$work/upgrade.log" >&2
  die "updating the Debian packages of the base image failed (log above)"
fi
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
  "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
# debootstrap copied this machine's resolver and name into the tree; the runtime provides its own.
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
chmod 1777 "$rootfs/tmp"

got=$(chroot "$rootfs" python -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
  || die "the base image has no working python"
[ "$got" = "$python_version" ] || die "Debian $suite gives Python $got, but the base image stands in for Python $python_version"

# Copy the tree in with tar (owners, modes and setuid bits kept), then commit under a temporary name.
container=$("${buildah[@]}" from --pull-never scratch)
mnt=$("${buildah[@]}" mount "$container")
tar -C "$rootfs" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
"${buildah[@]}" umount "$container" >/dev/null
"${buildah[@]}" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd python3 \
  --label "org.opencontainers.image.description=Stand-in for $image: Debian $suite minbase with python3 $python_version (made by rollback-verifier's deploy/image/debian-base.sh)" \
  --label "io.rollback-verifier.base-recipe=${RV_BASE_RECIPE:-none}" \
  "$container"
temporary="localhost/rollback-verifier-base-tmp:$$"
"${buildah[@]}" commit --quiet --rm "$container" "$temporary" >/dev/null
container=""
"${buildah[@]}" tag "$temporary" "$image"
"${buildah[@]}" rmi "$temporary" >/dev/null
say "base image $image made ($(du -sh --apparent-size "$rootfs" | cut -f1) rootfs)"
