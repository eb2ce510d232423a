#!/usr/bin/env bash
# The main job: installs what it needs, builds Twill, and runs the demo (two speakers in two
# network namespaces exchanging their pod prefixes). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ip >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2
fi
cargo build --release -q -p agent
exec ./target/release/twill demo
