# Twill's image: the agent, which is also the CNI plugin (`twill` with CNI_COMMAND set).
#
#   cargo build --release -p agent --bin twill
#   docker build -t ghcr.io/twill-net/twill:latest .
#
# The binary is built on the host (as Calico's images take theirs), so the image needs no Rust
# toolchain; `scripts/image.sh` does both steps. BASE is the Debian 12 image to start from: the
# public one by default, a locally made one where no registry can be reached (image.sh).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
LABEL io.twill.image=twill
# The release profile keeps line tables for profiling; image.sh passes a stripped copy.
ARG BINARY=target/release/twill
# What the agent and the CNI path call at run time: iptables/ipset for policy, iproute2 for
# operators' debugging, the reference bridge/host-local plugins the CNI plugin delegates to.
# Installed only if the base lacks them.
RUN dpkg -s iptables ipset iproute2 containernetworking-plugins ca-certificates >/dev/null 2>&1 \
 || { apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           iptables ipset iproute2 containernetworking-plugins ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }
COPY ${BINARY} /usr/local/bin/twill
COPY deploy/cni/10-twill.conflist /etc/twill-cni/10-twill.conflist
ENV CNI_PATH=/usr/lib/cni
# No ENTRYPOINT: containerlab's `cmd: twill agent --config …` and the DaemonSet's command both
# name the program themselves.
CMD ["twill", "agent", "--kubernetes"]
