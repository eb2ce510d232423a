//! Path attributes as the RIB sees them: the fields the decision process and the advertisement
//! rules read, plus the transitive attributes Twill does not interpret, kept as raw bytes so
//! they pass through unchanged (with the Partial bit set, RFC 4271 §5).

use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AsPath(pub Vec<AsSegment>);

impl AsPath {
    /// Path length for the decision process: an AS_SET counts as one (RFC 4271 §9.1.2.2).
    pub fn decision_len(&self) -> usize {
        self.0
            .iter()
            .map(|s| match s {
                AsSegment::Sequence(v) => v.len(),
                AsSegment::Set(_) => 1,
            })
            .sum()
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.0.iter().any(|s| match s {
            AsSegment::Sequence(v) | AsSegment::Set(v) => v.contains(&asn),
        })
    }

    /// The neighbouring AS for MED comparison: the first AS of the first AS_SEQUENCE.
    pub fn neighbour_as(&self) -> Option<u32> {
        match self.0.first() {
            Some(AsSegment::Sequence(v)) => v.first().copied(),
            _ => None,
        }
    }

    pub fn prepend(&self, asn: u32) -> AsPath {
        let mut segs = self.0.clone();
        match segs.first_mut() {
            Some(AsSegment::Sequence(v)) if v.len() < 255 => v.insert(0, asn),
            _ => segs.insert(0, AsSegment::Sequence(vec![asn])),
        }
        AsPath(segs)
    }

    pub fn flat(&self) -> Vec<u32> {
        self.0
            .iter()
            .flat_map(|s| match s {
                AsSegment::Sequence(v) | AsSegment::Set(v) => v.iter().copied(),
            })
            .collect()
    }
}

impl std::fmt::Display for AsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            let (open, close, v) = match seg {
                AsSegment::Sequence(v) => ("", "", v),
                AsSegment::Set(v) => ("{", "}", v),
            };
            if !first {
                write!(f, " ")?;
            }
            first = false;
            let s: Vec<String> = v.iter().map(|a| a.to_string()).collect();
            write!(
                f,
                "{open}{}{close}",
                s.join(if open.is_empty() { " " } else { "," })
            )?;
        }
        Ok(())
    }
}

/// An attribute kept verbatim: flags, type code and value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RawAttr {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PathAttrs {
    pub origin: Origin,
    pub as_path: AsPath,
    /// NEXT_HOP for IPv4 NLRI, the MP_REACH global next hop for IPv6.
    pub next_hop: IpAddr,
    /// The MP_REACH link-local next hop (RFC 2545), when the peer sent one.
    pub next_hop_local: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Optional transitive attributes not interpreted here (extended and large communities,
    /// unknown codes), in the order received.
    pub other: Vec<RawAttr>,
}

impl PathAttrs {
    /// Attributes of a route this speaker originates.
    pub fn local(next_hop: IpAddr) -> Self {
        PathAttrs {
            origin: Origin::Igp,
            as_path: AsPath::default(),
            next_hop,
            next_hop_local: None,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            other: Vec::new(),
        }
    }
}
