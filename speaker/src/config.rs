//! Speaker and peer configuration, validated with errors that name the field and the value.

use crate::policy::{ExportFilter, ImportFilter, NextHopOwners};
use crate::wire::Family;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} {reason}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub reason: &'static str,
}

fn bad(field: impl Into<String>, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError {
        field: field.into(),
        value: value.to_string(),
        reason,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// TCP port to listen on; 0 disables listening (every peer must then be active).
    pub listen_port: u16,
    /// Address to listen on; `::` accepts IPv4 and IPv6.
    pub listen_address: IpAddr,
    /// Prefixes this speaker originates (the node's pod CIDRs).
    pub originate: Vec<IpNet>,
    /// Offer Extended Message (RFC 8654).
    pub extended_message: bool,
    /// Reflect routes between iBGP peers as a route reflector of this cluster (RFC 4456);
    /// `None`: no reflection (RFC 4271 §9.2 split horizon).
    pub cluster_id: Option<Ipv4Addr>,
    /// Graceful restart (RFC 4724 with RFC 8538's N bit), both as helper and as restarting
    /// speaker; `None`: the capability is not offered and every session end flushes routes.
    pub graceful_restart: Option<GracefulRestartConfig>,
}

/// Graceful restart's settings. Defaults as BIRD and Calico (restart time 120 s) and FRR
/// (stale-path time 360 s).
#[derive(Debug, Clone, PartialEq)]
pub struct GracefulRestartConfig {
    /// Offered to peers: how long they keep our routes while our session is down (1–4095 s,
    /// the capability's 12 bits).
    pub restart_time: u16,
    /// Once a restarted peer's session is back, how long its stale routes are kept at most if
    /// its End-of-RIB does not come first.
    pub stale_time: Duration,
    /// This speaker has just restarted and the kernel kept its forwarding state: the OPENs say
    /// so (R bit, F bit per family) and the first advertisement to every peer waits until the
    /// peers' End-of-RIBs (RFC 4724 §4.1) or `deferral`, whichever comes first.
    pub restarting: bool,
    /// Restarting only: how long after the first session comes up to wait for the other
    /// peers' End-of-RIB. Short on purpose: peers that are down are not waited for longer,
    /// so nodes restarting together do not hold each other up (calico#7144).
    pub deferral: Duration,
}

impl Default for GracefulRestartConfig {
    fn default() -> Self {
        GracefulRestartConfig {
            restart_time: 120,
            stale_time: Duration::from_secs(360),
            restarting: false,
            deferral: Duration::from_secs(5),
        }
    }
}

impl SpeakerConfig {
    pub fn new(asn: u32, router_id: Ipv4Addr) -> Self {
        SpeakerConfig {
            asn,
            router_id,
            listen_port: 179,
            listen_address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            originate: Vec::new(),
            extended_message: true,
            cluster_id: None,
            graceful_restart: Some(GracefulRestartConfig::default()),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.asn == 0 {
            return Err(bad("asNumber", self.asn, "is reserved (RFC 7607)"));
        }
        if self.router_id.is_unspecified() || self.router_id.is_multicast() {
            return Err(bad(
                "routerId",
                self.router_id,
                "is not a usable BGP identifier",
            ));
        }
        if let Some(gr) = &self.graceful_restart {
            if !(1..=4095).contains(&gr.restart_time) {
                return Err(bad(
                    "gracefulRestart.restartTime",
                    gr.restart_time,
                    "must be 1-4095 seconds (12 bits, RFC 4724)",
                ));
            }
            if gr.stale_time.is_zero() {
                return Err(bad(
                    "gracefulRestart.staleRoutesTime",
                    0,
                    "must be positive",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub asn: u32,
    pub port: u16,
    /// Source address for outgoing connections, and the next hop we advertise on them.
    pub local_address: Option<IpAddr>,
    /// Never connect; wait for the peer.
    pub passive: bool,
    pub hold_time: u16,
    pub keepalive: u16,
    pub connect_retry: Duration,
    pub idle_hold: Duration,
    pub families: Vec<Family>,
    pub import: ImportFilter,
    /// Which next hops listed prefixes may come with (after `import`); empty: not checked.
    pub next_hop_owners: NextHopOwners,
    pub export: ExportFilter,
    /// Close the session with Cease / Maximum Number of Prefixes Reached above this count.
    pub max_prefixes: Option<usize>,
    /// Next hop to advertise for IPv4 prefixes on an IPv6 session, and the reverse.
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Link-local next hop to add to IPv6 announcements (RFC 2545).
    pub next_hop_v6_local: Option<Ipv6Addr>,
    /// An iBGP peer this speaker reflects routes for (RFC 4456 §6); see [`PeerRole`].
    pub reflector_client: bool,
    /// TCP MD5 signature key (RFC 2385) for this peer's connections, both ways.
    pub password: Option<Password>,
}

/// How the speaker treats a peer when it decides who gets which route: eBGP and iBGP by the
/// AS numbers (RFC 4271 §9.2), a reflector client by configuration (RFC 4456 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum PeerRole {
    Ebgp,
    Ibgp,
    ReflectorClient,
}

impl PeerRole {
    pub fn is_ebgp(self) -> bool {
        self == PeerRole::Ebgp
    }
}

impl std::fmt::Display for PeerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerRole::Ebgp => "eBGP",
            PeerRole::Ibgp => "iBGP",
            PeerRole::ReflectorClient => "reflector client",
        })
    }
}

/// A TCP MD5 key. Its `Debug` shows only the length, so configurations can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Linux's `TCP_MD5SIG_MAXKEYLEN`.
    pub const MAX_LEN: usize = 80;

    pub fn new(key: impl Into<Vec<u8>>) -> Password {
        Password(key.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the kernel takes it: 1 to [`Password::MAX_LEN`] bytes.
    pub fn len_ok(&self) -> bool {
        (1..=Self::MAX_LEN).contains(&self.0.len())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password({} bytes)", self.0.len())
    }
}

impl PeerConfig {
    pub fn new(address: IpAddr, asn: u32) -> Self {
        PeerConfig {
            address,
            asn,
            port: 179,
            local_address: None,
            passive: false,
            hold_time: 90,
            keepalive: 30,
            connect_retry: Duration::from_secs(5),
            idle_hold: Duration::from_secs(1),
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            import: ImportFilter::Any,
            next_hop_owners: NextHopOwners::default(),
            export: ExportFilter::All,
            max_prefixes: None,
            next_hop_v4: None,
            next_hop_v6: None,
            next_hop_v6_local: None,
            reflector_client: false,
            password: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = |name: &str| format!("peers[{}].{name}", self.address);
        if self.asn == 0 {
            return Err(bad(f("asNumber"), self.asn, "is reserved (RFC 7607)"));
        }
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(bad(
                f("holdTime"),
                self.hold_time,
                "must be 0 or at least 3 seconds",
            ));
        }
        if self.hold_time != 0 && self.keepalive == 0 {
            return Err(bad(
                f("keepaliveTime"),
                self.keepalive,
                "must be positive when holdTime is",
            ));
        }
        if self.families.is_empty() {
            return Err(bad(f("families"), "[]", "must name at least one family"));
        }
        if let Some(pw) = self.password.as_ref().filter(|pw| !pw.len_ok()) {
            return Err(bad(
                f("password"),
                format!("{} bytes", pw.as_bytes().len()),
                "must be 1-80 bytes (the TCP MD5 key limit)",
            ));
        }
        if self.connect_retry.is_zero() {
            return Err(bad(f("connectRetryTime"), 0, "must be positive"));
        }
        Ok(())
    }

    /// The peer's role seen from a speaker in `local_as`.
    pub fn role(&self, local_as: u32) -> PeerRole {
        match (self.asn == local_as, self.reflector_client) {
            (false, _) => PeerRole::Ebgp,
            (true, false) => PeerRole::Ibgp,
            (true, true) => PeerRole::ReflectorClient,
        }
    }

    /// The checks that need the speaker's own configuration.
    pub fn validate_for(&self, speaker: &SpeakerConfig) -> Result<(), ConfigError> {
        self.validate()?;
        if self.reflector_client && self.asn != speaker.asn {
            return Err(bad(
                format!("peers[{}].reflectorClient", self.address),
                "true",
                "needs an iBGP peer (asNumber equal to the local AS)",
            ));
        }
        Ok(())
    }

    /// Whether a change from `old` to `self` needs the session to be re-established.
    pub fn needs_reset(&self, old: &PeerConfig) -> bool {
        self.asn != old.asn
            || self.port != old.port
            || self.local_address != old.local_address
            || self.passive != old.passive
            || self.hold_time != old.hold_time
            || self.keepalive != old.keepalive
            || self.families != old.families
            || self.next_hop_v4 != old.next_hop_v4
            || self.next_hop_v6 != old.next_hop_v6
            || self.next_hop_v6_local != old.next_hop_v6_local
            // A connection keeps the key it was made with; a new key needs a new connection.
            || self.password != old.password
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_hidden_and_reset_the_session() {
        let mut p = PeerConfig::new("10.0.0.2".parse().unwrap(), 65000);
        p.password = Some(Password::new("s3cr3t"));
        assert!(p.validate().is_ok());
        assert_eq!(format!("{:?}", p.password), "Some(Password(6 bytes))");
        assert!(!format!("{p:?}").contains("s3cr3t"));
        let mut q = p.clone();
        q.password = Some(Password::new("n3w"));
        assert!(q.needs_reset(&p), "a new key needs a new connection");
        q.password = Some(Password::new(vec![b'x'; 81]));
        assert_eq!(
            q.validate().unwrap_err().to_string(),
            "peers[10.0.0.2].password: 81 bytes must be 1-80 bytes (the TCP MD5 key limit)"
        );
    }

    #[test]
    fn the_role_follows_the_as_numbers_and_reflection() {
        let speaker = SpeakerConfig::new(64512, "1.1.1.1".parse().unwrap());
        let mut p = PeerConfig::new("10.0.0.2".parse().unwrap(), 64512);
        assert_eq!(p.role(64512), PeerRole::Ibgp);
        assert_eq!(p.role(65000), PeerRole::Ebgp);
        p.reflector_client = true;
        assert_eq!(p.role(64512), PeerRole::ReflectorClient);
        assert!(p.validate_for(&speaker).is_ok());
        p.asn = 65000;
        assert_eq!(
            p.validate_for(&speaker).unwrap_err().to_string(),
            "peers[10.0.0.2].reflectorClient: true needs an iBGP peer (asNumber equal to the local AS)"
        );
    }

    #[test]
    fn errors_name_field_and_value() {
        let mut p = PeerConfig::new("10.0.0.2".parse().unwrap(), 65000);
        p.hold_time = 2;
        let e = p.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "peers[10.0.0.2].holdTime: 2 must be 0 or at least 3 seconds"
        );
        let s = SpeakerConfig::new(0, "1.1.1.1".parse().unwrap());
        assert_eq!(s.validate().unwrap_err().field, "asNumber");
        let s = SpeakerConfig::new(65000, Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.validate().unwrap_err().value, "0.0.0.0");
    }
}
