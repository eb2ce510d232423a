//! NOTIFICATION codes and subcodes (RFC 4271 §4.5, RFC 4486, RFC 6608, RFC 7313).
//!
//! Kept as our own small type rather than netgauze's per-subcode enums: we must send and log
//! any (code, subcode, data) triple verbatim, including subcodes a library does not know yet.

use std::fmt;

/// A NOTIFICATION as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

pub mod header {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

pub mod open {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

pub mod update {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// RFC 6608 subcodes for FSM errors.
pub mod fsm {
    pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// RFC 4486 Cease subcodes.
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION: u8 = 7;
    /// RFC 8538 §3: the receiver flushes the sender's routes even with graceful restart; the
    /// data carries the NOTIFICATION that caused it (code, subcode, data).
    pub const HARD_RESET: u8 = 9;
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    pub fn cease(subcode: u8) -> Self {
        Self::new(code::CEASE, subcode, Vec::new())
    }

    /// A Cease / Hard Reset (RFC 8538 §3): the sender's routes go, graceful restart or not.
    pub fn is_hard_reset(&self) -> bool {
        self.code == code::CEASE && self.subcode == cease::HARD_RESET
    }

    /// Whether we end a session this way for good, even with RFC 8538 graceful restart: then
    /// it is sent wrapped in a Hard Reset and the peer's routes are flushed, not kept stale.
    /// A Hard Reset itself, and the Ceases that mean "stop": the prefix limit (keeping routes
    /// we refused would defeat it), an administrative shutdown (stopping the speaker for good)
    /// and a peer removed from the configuration (RFC 8538 §5 suggests the same set).
    pub fn calls_for_hard_reset(&self) -> bool {
        self.code == code::CEASE
            && matches!(
                self.subcode,
                cease::HARD_RESET
                    | cease::MAX_PREFIXES
                    | cease::ADMIN_SHUTDOWN
                    | cease::PEER_DECONFIGURED
            )
    }

    /// This NOTIFICATION wrapped in a Cease / Hard Reset (RFC 8538 §3), unless it is one.
    pub fn hard_reset(&self) -> Notification {
        if self.is_hard_reset() {
            return self.clone();
        }
        let mut data = vec![self.code, self.subcode];
        data.extend_from_slice(&self.data);
        Notification::new(code::CEASE, cease::HARD_RESET, data)
    }

    pub fn hold_timer_expired() -> Self {
        Self::new(code::HOLD_TIMER_EXPIRED, 0, Vec::new())
    }

    fn name(&self) -> &'static str {
        match (self.code, self.subcode) {
            (1, 1) => "Message Header Error / Connection Not Synchronized",
            (1, 2) => "Message Header Error / Bad Message Length",
            (1, 3) => "Message Header Error / Bad Message Type",
            (1, _) => "Message Header Error",
            (2, 1) => "OPEN Message Error / Unsupported Version Number",
            (2, 2) => "OPEN Message Error / Bad Peer AS",
            (2, 3) => "OPEN Message Error / Bad BGP Identifier",
            (2, 4) => "OPEN Message Error / Unsupported Optional Parameter",
            (2, 6) => "OPEN Message Error / Unacceptable Hold Time",
            (2, 7) => "OPEN Message Error / Unsupported Capability",
            (2, _) => "OPEN Message Error",
            (3, 1) => "UPDATE Message Error / Malformed Attribute List",
            (3, 2) => "UPDATE Message Error / Unrecognized Well-known Attribute",
            (3, 3) => "UPDATE Message Error / Missing Well-known Attribute",
            (3, 4) => "UPDATE Message Error / Attribute Flags Error",
            (3, 5) => "UPDATE Message Error / Attribute Length Error",
            (3, 6) => "UPDATE Message Error / Invalid ORIGIN Attribute",
            (3, 8) => "UPDATE Message Error / Invalid NEXT_HOP Attribute",
            (3, 9) => "UPDATE Message Error / Optional Attribute Error",
            (3, 10) => "UPDATE Message Error / Invalid Network Field",
            (3, 11) => "UPDATE Message Error / Malformed AS_PATH",
            (3, _) => "UPDATE Message Error",
            (4, _) => "Hold Timer Expired",
            (5, 1) => "FSM Error / Unexpected Message in OpenSent",
            (5, 2) => "FSM Error / Unexpected Message in OpenConfirm",
            (5, 3) => "FSM Error / Unexpected Message in Established",
            (5, _) => "FSM Error",
            (6, 1) => "Cease / Maximum Number of Prefixes Reached",
            (6, 2) => "Cease / Administrative Shutdown",
            (6, 3) => "Cease / Peer De-configured",
            (6, 4) => "Cease / Administrative Reset",
            (6, 5) => "Cease / Connection Rejected",
            (6, 6) => "Cease / Other Configuration Change",
            (6, 7) => "Cease / Connection Collision Resolution",
            (6, 8) => "Cease / Out of Resources",
            (6, 9) => "Cease / Hard Reset",
            (6, _) => "Cease",
            (7, _) => "ROUTE-REFRESH Message Error",
            _ => "Unknown error code",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.name(), self.code, self.subcode)?;
        match self.data.as_slice() {
            [code, sub, rest @ ..]
                if self.code == code::CEASE && self.subcode == cease::HARD_RESET =>
            {
                write!(f, " for {}", Notification::new(*code, *sub, rest))
            }
            _ => Ok(()),
        }
    }
}
