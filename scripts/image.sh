#!/usr/bin/env bash
# Build Twill's image from the Dockerfile, on a machine with a Docker engine but no registry:
# the base image is made here (debootstrap of Debian 12 into a cache directory, `docker import`
# as twill-base:bookworm, once), the binary is built on the host, and the Dockerfile takes the
# base as a build argument (its default stays the public debian:bookworm-slim users pull).
#
#   scripts/image.sh [TAG]      # default ghcr.io/twill-net/twill:dev; prints the tag
#
# Cache: $TWILL_IMAGE_CACHE, else ~/.cache/twill-image. TWILL_IMAGE_PROFILE=dev puts the debug
# build in (the test suite does: it builds that binary anyway, and a cold release build costs
# about 9 of CI's 30 minutes on 2 cores); the default, release, is what ships.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-ghcr.io/twill-net/twill:dev}"
cache="${TWILL_IMAGE_CACHE:-$HOME/.cache/twill-image}"
base=twill-base:bookworm
log() { echo "image.sh: $*" >&2; }
# The binary is built here and runs on a bookworm base: build it on bookworm (glibc 2.36), or
# the image may not start (GLIBC_2.3x not found).
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" != bookworm ]; then
  log "this host is ${codename:-unknown}, not Debian 12 (bookworm): build the image on bookworm"
  exit 1
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [ ! -x /usr/sbin/debootstrap ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  fi
  root="$cache/rootfs"
  if [ ! -f "$cache/.rootfs-done" ]; then
    log "debootstrap bookworm (once)"
    rm -rf "$root" && mkdir -p "$root"
    # What the agent and the CNI path call at run time, already in the base: the Dockerfile's
    # install step then has nothing to fetch (no network needed while building).
    /usr/sbin/debootstrap --variant=minbase \
      --include=iptables,ipset,iproute2,containernetworking-plugins,ca-certificates \
      bookworm "$root" http://deb.debian.org/debian >&2
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    touch "$cache/.rootfs-done"
  fi
  log "importing $base"
  tar -C "$root" -c . | docker import - "$base" >&2
fi

profile="${TWILL_IMAGE_PROFILE:-release}"
case "$profile" in
  release) cargo_args=(--release); built=target/release/twill ;;
  dev) cargo_args=(); built=target/debug/twill ;;
  *) log "TWILL_IMAGE_PROFILE=$profile: expected release or dev"; exit 1 ;;
esac
log "building twill ($profile)"
cargo build "${cargo_args[@]}" -q -p agent --bin twill
mkdir -p target/image
# Without the line tables the release profile keeps for profiling: ~120 MB less.
objcopy --strip-debug "$built" target/image/twill
log "building $tag"
docker build -q --build-arg "BASE=$base" --build-arg BINARY=target/image/twill -t "$tag" . >&2
# The image this replaced, if any, is left untagged: remove it (only Twill's own).
docker image prune -f --filter label=io.twill.image=twill >/dev/null
echo "$tag"
