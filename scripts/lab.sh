#!/usr/bin/env bash
# The main job: a multi-rack Twill fabric on this one machine. Installs the packages the lab
# needs, builds `twill`, brings up a containerlab topology in network namespaces (default
# two-racks-vxlan; `./scripts/lab.sh two-racks-tor` for the FRR top-of-rack one) and runs
# `twill lab test`: every pod pings every other pod, then each node's `twill status`.
# The lab stays up for exploring; `./target/release/twill lab down` removes it.
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
topology="${1:-two-racks-vxlan}"
name="$(basename "$topology" .clab.yml)"
need=()
for pkg in iproute2 iputils-ping procps containernetworking-plugins frr iptables ipset; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  # The lab runs its own FRR inside its namespaces; the host service we just installed is
  # not wanted.
  if printf '%s\n' "${need[@]}" | grep -qx frr; then
    systemctl disable --now frr >/dev/null 2>&1 || true
  fi
fi
cargo build --release -q -p agent
twill=./target/release/twill
# A lab of the same name left from an earlier run is replaced.
"$twill" lab down "$name" >/dev/null 2>&1 || true
"$twill" lab up "$topology"
"$twill" lab test "$name"
echo
echo "The lab stays up: try ip netns exec clab-$name-a1 ip route"
echo "Remove it with: $twill lab down $name"
