use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
    #[error("node address {0} is on no local interface; cannot pick the underlay")]
    NoUnderlay(IpAddr),
    #[error("IPIP encapsulation is configured but this kernel has no ipip module (no tunl0 device, no /sys/module/ipip); load it (modprobe ipip) or use encapsulation type VXLAN")]
    IpipUnavailable,
    #[error("IPIP carries only an IPv4 underlay; node address {0} is IPv6 (use VXLAN)")]
    IpipNeedsIpv4(IpAddr),
    #[error("cannot write the MTU file {path}: {source}")]
    MtuFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
