//! NetworkPolicy semantics evaluated directly on the model, with no rules at all: what
//! `twill policy explain` answers (allowed or denied, by which policy and rule) and what the
//! compiled rules are checked against in tests.

use cluster::workloads::{Peer, Pod, Policy, PortRef, Protocol, Workloads};
use std::net::IpAddr;

/// One end of a connection: a pod, or an address that is no pod's.
#[derive(Clone, Copy, Debug)]
pub enum End<'a> {
    Pod(&'a Pod, IpAddr),
    Addr(IpAddr),
}

impl End<'_> {
    fn ip(&self) -> IpAddr {
        match self {
            End::Pod(_, ip) | End::Addr(ip) => *ip,
        }
    }
    fn pod(&self) -> Option<&Pod> {
        match self {
            End::Pod(p, _) => Some(p),
            End::Addr(_) => None,
        }
    }
}

/// One direction's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// The pod is not a pod here, or no policy selects it for this direction.
    NotIsolated,
    /// The first policy (by namespace/name) and rule (index) that allow it.
    AllowedBy { policy: String, rule: usize },
    /// Isolated by these policies, none of which allows it.
    Denied { policies: Vec<String> },
}

impl Side {
    pub fn allows(&self) -> bool {
        !matches!(self, Side::Denied { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub egress: Side,
    pub ingress: Side,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

/// Would a new connection from `src` to `dst` on `port`/`protocol` be allowed?
pub fn evaluate(w: &Workloads, src: End, dst: End, protocol: Protocol, port: u16) -> Verdict {
    Verdict {
        egress: side(w, src, dst, protocol, port, false),
        ingress: side(w, dst, src, protocol, port, true),
    }
}

/// `me` is the selected end; `other` the peer. `ingress`: `me` receives.
fn side(w: &Workloads, me: End, other: End, protocol: Protocol, port: u16, ingress: bool) -> Side {
    let Some(pod) = me.pod() else {
        return Side::NotIsolated;
    };
    let mut isolating = Vec::new();
    for p in w.policies.iter().filter(|p| p.selects(pod)) {
        let Some(rules) = p.rules(ingress) else {
            continue;
        };
        // The destination pod, on which a named port is resolved.
        let dst = if ingress { me } else { other };
        for (i, r) in rules.iter().enumerate() {
            let peer_ok =
                r.peers.is_empty() || r.peers.iter().any(|peer| peer_matches(w, p, peer, other));
            let port_ok = r.ports.is_empty()
                || r.ports.iter().any(|pm| {
                    pm.protocol == protocol
                        && match &pm.port {
                            None => true,
                            Some(PortRef::Range { start, end }) => (*start..=*end).contains(&port),
                            Some(PortRef::Named(n)) => dst
                                .pod()
                                .is_some_and(|d| d.named_port(n, protocol) == Some(port)),
                        }
                });
            if peer_ok && port_ok {
                return Side::AllowedBy {
                    policy: p.key(),
                    rule: i,
                };
            }
        }
        isolating.push(p.key());
    }
    if isolating.is_empty() {
        Side::NotIsolated
    } else {
        Side::Denied {
            policies: isolating,
        }
    }
}

fn peer_matches(w: &Workloads, p: &Policy, peer: &Peer, other: End) -> bool {
    match peer {
        Peer::Block { cidr, except } => {
            let ip = other.ip();
            cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
        }
        Peer::Pods { namespaces, pods } => {
            let Some(o) = other.pod() else {
                return false;
            };
            let ns_ok = match namespaces {
                None => o.namespace == p.namespace,
                Some(sel) => w
                    .namespaces
                    .get(&o.namespace)
                    .is_some_and(|labels| sel.matches(labels)),
            };
            ns_ok && pods.matches(&o.labels)
        }
    }
}
