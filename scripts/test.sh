#!/usr/bin/env bash
# The whole test suite: installs the BGP daemons and tools the lab tests run against, the
# rustfmt/clippy components, a real kube-apiserver + etcd (scripts/kube.sh, cached), then checks
# formatting, lints, runs every test, and runs each fuzz
# target for 30 s from the committed seeds (cargo-fuzz is installed if missing).
# Run as root on Debian 12 (the lab tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in bird2 frr gobgpd exabgp iproute2 iptables ipset nftables iputils-ping tcpdump curl containernetworking-plugins g++; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# The Debian frr package starts its own service; the tests run their own daemons.
systemctl stop frr 2>/dev/null || true
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# A real Kubernetes control plane for the API tests (built once, cached; scripts/kube.sh says how).
./scripts/kube.sh >/dev/null
# Twill's image, where a Docker engine runs (the image test says why it skips otherwise), with
# the debug binary the tests build anyway: the same Dockerfile and base, no release build.
if docker info >/dev/null 2>&1; then
  TWILL_IMAGE=$(TWILL_IMAGE_PROFILE=dev ./scripts/image.sh twill-test/twill:latest)
  export TWILL_IMAGE
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets 2>&1 | tee "$log"
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "\nsuite: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
# Each fuzz target for a bounded time; a crash fails the suite (scripts/fuzz.sh says more).
./scripts/fuzz.sh 30
