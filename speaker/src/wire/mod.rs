//! The wire adapter: the only module that sees BGP bytes.
//!
//! `netgauze-bgp-pkt` decodes and encodes OPEN, UPDATE attributes and ROUTE-REFRESH. This module
//! owns what it leaves to its caller (see ../shared/CRATES.md): framing and the 4096/65535 limit,
//! attribute flags (extended length), RFC 7606 error classification, and the context negotiated
//! by the OPEN exchange. Everything above it works with [`Message`] and [`PathAttrs`].

mod attrs;
mod decode;
mod encode;
mod frame;

pub use attrs::{AsPath, AsSegment, Origin, PathAttrs, RawAttr};
pub use decode::{decode, Capabilities, GracefulRestart, Open, Update};
pub use encode::{
    encode_end_of_rib, encode_keepalive, encode_notification, encode_open, encode_route_refresh,
    pack_updates, unicast_prefix, OpenParams, AS_TRANS,
};
pub use frame::{frame_len, HEADER_LEN, MAX_EXTENDED_MESSAGE, MAX_MESSAGE};

use crate::notification::Notification;
use ipnet::IpNet;
use serde::Serialize;

/// An address family Twill carries. Everything else is refused at capability negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }
    pub fn afi_safi(self) -> (u16, u8) {
        match self {
            Family::Ipv4Unicast => (1, 1),
            Family::Ipv6Unicast => (2, 1),
        }
    }
    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }
}

/// What the OPEN exchange settled for one session: decode and encode both depend on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Both sides sent the 4-octet AS capability (RFC 6793).
    pub asn4: bool,
    /// Both sides sent Extended Message (RFC 8654): UPDATEs may be up to 65535 bytes.
    pub extended_message: bool,
    /// Families both sides announced with MP capabilities (or IPv4 unicast implicitly).
    pub families: Vec<Family>,
    /// The peer is in another AS: LOCAL_PREF from it is discarded (RFC 7606 §7.5).
    pub ebgp: bool,
}

impl Negotiated {
    /// What holds before an OPEN has been received: 2-byte AS, 4096 bytes.
    pub fn initial() -> Self {
        Negotiated {
            asn4: false,
            extended_message: false,
            families: vec![Family::Ipv4Unicast],
            ebgp: false,
        }
    }
    pub fn max_message(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE
        } else {
            MAX_MESSAGE
        }
    }
}

/// One decoded BGP message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh { afi: u16, safi: u8, subtype: u8 },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh { .. } => "ROUTE-REFRESH",
        }
    }
}

/// BGP message type codes.
pub(crate) mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}
