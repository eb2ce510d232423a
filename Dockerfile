# Twill's image: the agent, which is also the CNI plugin (`twill` with CNI_COMMAND set).
# Build: docker build -t ghcr.io/twill-net/twill:latest .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p agent --bin twill

FROM debian:bookworm-slim
# What the agent and the CNI path call at run time: iptables/ipset for policy, iproute2 for
# operators' debugging, the reference bridge/host-local plugins the CNI plugin delegates to.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      iptables ipset iproute2 containernetworking-plugins ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/twill /usr/local/bin/twill
ENV CNI_PATH=/usr/lib/cni
# No ENTRYPOINT: containerlab's `cmd: twill agent --config …` and the DaemonSet's command both
# name the program themselves.
CMD ["twill", "agent", "--kubernetes"]
