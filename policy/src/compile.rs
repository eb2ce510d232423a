//! The pure compile step: [`Workloads`] and this node's name → one [`Ruleset`] per family.
//!
//! Shape (see `docs/adr/0003-network-policy.md`):
//! - `TWILL-FORWARD`: replies return; our mark bits are cleared; a packet from a pod that an
//!   Egress policy selects goes to `TWILL-EGRESS`, one to a pod an Ingress policy selects to
//!   `TWILL-INGRESS`.
//! - `TWILL-EGRESS` / `TWILL-INGRESS`: for each policy selecting a local pod, a jump into the
//!   policy's chain for its pods (until some policy has allowed the packet); then allowed
//!   packets return, the rest are counted per policy that selected them and dropped.
//! - `TWILL-PE-…` / `TWILL-PI-…`: one pair of rules per (peer × port) of each rule: set the
//!   direction's mark bit, return.
//!
//! Pods appear only in sets, so rules change with policies and with which policies have local
//! pods, never with pod churn otherwise.

use crate::ruleset::{
    policy_chain, set_name, Counted, Direction, Family, IpSet, Match, Rule, Ruleset, SetDir,
    SetKind, Target, EGRESS_ALLOWED, FORWARD_CHAIN, INGRESS_ALLOWED, SET_PREFIX,
};
use cluster::workloads::{Peer, Pod, Policy, PortRef, Protocol, Rule as PolicyRule, Workloads};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The fixed set of local pods some policy isolates in `dir`.
pub fn isolated_set(family: Family, dir: Direction) -> String {
    format!("{SET_PREFIX}{}-{}", family.digit(), dir.as_str())
}

/// Compile the rules node `node` enforces for `family`.
pub fn compile(w: &Workloads, node: &str, family: Family) -> Ruleset {
    let mut c = Compiler {
        w,
        family,
        rs: Ruleset::new(family),
    };
    let local: Vec<&Pod> = w
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(node))
        .collect();
    let mut isolated = [BTreeSet::new(), BTreeSet::new()];
    let mut dispatch: [Vec<Rule>; 2] = [Vec::new(), Vec::new()];
    let mut denied: [Vec<Rule>; 2] = [Vec::new(), Vec::new()];
    for p in &w.policies {
        let selected: Vec<&Pod> = local
            .iter()
            .copied()
            .filter(|pod| p.selects(pod))
            .filter(|pod| pod.ips.iter().any(|ip| Family::of(ip) == family))
            .collect();
        if selected.is_empty() {
            continue;
        }
        let key = p.key();
        let ips: BTreeSet<String> = selected.iter().flat_map(|pod| c.ips(pod)).collect();
        let local_set = c.set(set_name(family, 'l', &key), SetKind::Ip, ips.clone());
        for (k, dir) in [Direction::Ingress, Direction::Egress]
            .into_iter()
            .enumerate()
        {
            let Some(rules) = p.rules(dir.is_ingress()) else {
                continue;
            };
            isolated[k].extend(ips.iter().cloned());
            let chain = policy_chain(dir, &key);
            let body = c.policy_rules(p, dir, rules, &selected);
            c.rs.chains.insert(chain.clone(), body);
            let local_match = Match::Set {
                name: local_set.clone(),
                dir: dir.local_end(),
                negate: false,
            };
            dispatch[k].push(Rule {
                matches: vec![
                    Match::Mark {
                        bits: dir.bit(),
                        negate: true,
                    },
                    local_match.clone(),
                ],
                target: Target::Jump(chain),
                label: format!("{} {key}", dir.as_str()),
            });
            let label = format!("denied {} {key}", dir.as_str());
            c.rs.counted.insert(
                (dir.chain().to_string(), label.clone()),
                Counted::Denied {
                    policy: key.clone(),
                    dir,
                },
            );
            denied[k].push(Rule {
                matches: vec![local_match],
                target: Target::Count,
                label,
            });
        }
    }
    let mut forward = vec![
        Rule {
            matches: vec![Match::Established],
            target: Target::Return,
            label: "replies".into(),
        },
        Rule {
            matches: vec![],
            target: Target::ClearMark(EGRESS_ALLOWED | INGRESS_ALLOWED),
            label: String::new(),
        },
    ];
    // Egress first: a packet between two local pods needs both, and either may drop it.
    for (k, dir) in [(1, Direction::Egress), (0, Direction::Ingress)] {
        let set = c.set(
            isolated_set(family, dir),
            SetKind::Ip,
            std::mem::take(&mut isolated[k]),
        );
        let chain = dir.chain();
        forward.push(Rule {
            matches: vec![Match::Set {
                name: set,
                dir: dir.local_end(),
                negate: false,
            }],
            target: Target::Jump(chain.to_string()),
            label: format!("{} isolated", dir.as_str()),
        });
        let mut body = std::mem::take(&mut dispatch[k]);
        body.push(Rule {
            matches: vec![Match::Mark {
                bits: dir.bit(),
                negate: false,
            }],
            target: Target::Return,
            label: "allowed".into(),
        });
        body.append(&mut denied[k]);
        body.push(Rule {
            matches: vec![],
            target: Target::Drop,
            label: format!("no policy allows this {}", dir.as_str()),
        });
        c.rs.chains.insert(chain.to_string(), body);
    }
    c.rs.chains.insert(FORWARD_CHAIN.to_string(), forward);
    c.rs
}

struct Compiler<'a> {
    w: &'a Workloads,
    family: Family,
    rs: Ruleset,
}

impl Compiler<'_> {
    fn ips(&self, pod: &Pod) -> Vec<String> {
        pod.ips
            .iter()
            .filter(|ip| Family::of(ip) == self.family)
            .map(IpAddr::to_string)
            .collect()
    }

    /// Add (or find) a set by name; the first definition wins, which is right because the
    /// name is a hash of what it holds.
    fn set(&mut self, name: String, kind: SetKind, members: BTreeSet<String>) -> String {
        self.rs
            .sets
            .entry(name.clone())
            .or_insert(IpSet { kind, members });
        name
    }

    fn policy_rules(
        &mut self,
        p: &Policy,
        dir: Direction,
        rules: &[PolicyRule],
        selected: &[&Pod],
    ) -> Vec<Rule> {
        let key = p.key();
        let chain = policy_chain(dir, &key);
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let peers: Vec<Vec<Match>> = if rule.peers.is_empty() {
                vec![vec![]]
            } else {
                rule.peers
                    .iter()
                    .filter_map(|peer| self.peer(p, dir, peer))
                    .collect()
            };
            let ports: Vec<Vec<Match>> = if rule.ports.is_empty() {
                vec![vec![]]
            } else {
                rule.ports
                    .iter()
                    .map(|port| {
                        let mut m = vec![Match::Protocol(port.protocol)];
                        match &port.port {
                            None => {}
                            Some(PortRef::Range { start, end }) => m.push(Match::Ports {
                                start: *start,
                                end: *end,
                            }),
                            Some(PortRef::Named(name)) => {
                                m.push(self.named_port(&key, dir, name, port.protocol, selected))
                            }
                        }
                        m
                    })
                    .collect()
            };
            let label = format!("allow {} {key} rule {i}", dir.as_str());
            self.rs.counted.insert(
                (chain.clone(), label.clone()),
                Counted::Allowed {
                    policy: key.clone(),
                    dir,
                },
            );
            for peer in &peers {
                for port in &ports {
                    let mut matches = peer.clone();
                    matches.extend(port.iter().cloned());
                    out.push(Rule {
                        matches,
                        target: Target::Mark(dir.bit()),
                        label: label.clone(),
                    });
                    out.push(Rule {
                        matches: vec![Match::Mark {
                            bits: dir.bit(),
                            negate: false,
                        }],
                        target: Target::Return,
                        label: String::new(),
                    });
                }
            }
        }
        out
    }

    /// The match for one peer, or `None` when it cannot match in this family (an ipBlock of
    /// the other family).
    fn peer(&mut self, p: &Policy, dir: Direction, peer: &Peer) -> Option<Vec<Match>> {
        let family = self.family;
        let name = match peer {
            Peer::Pods { namespaces, pods } => {
                let meaning = match namespaces {
                    None => format!("ns={}|{}", p.namespace, pods.canonical),
                    Some(ns) => format!("nssel={}|{}", ns.canonical, pods.canonical),
                };
                let name = set_name(family, 'p', &meaning);
                // Many policies share a peer (the name says what it holds): members once.
                if !self.rs.sets.contains_key(&name) {
                    let in_namespaces: Vec<&Pod> = match namespaces {
                        None => pods_of(self.w, &p.namespace).iter().collect(),
                        Some(sel) => {
                            let w = self.w;
                            w.namespaces
                                .iter()
                                .filter(|(_, labels)| sel.matches(labels))
                                .flat_map(|(ns, _)| pods_of(w, ns))
                                .collect()
                        }
                    };
                    let members: BTreeSet<String> = in_namespaces
                        .into_iter()
                        .filter(|pod| pods.matches(&pod.labels))
                        .flat_map(|pod| self.ips(pod))
                        .collect();
                    self.set(name.clone(), SetKind::Ip, members);
                }
                name
            }
            Peer::Block { cidr, except } => {
                if is_v4(cidr) != (family == Family::V4) {
                    return None;
                }
                let mut meaning = cidr.to_string();
                let mut members = BTreeSet::new();
                for n in split_default(*cidr) {
                    members.insert(net_entry(n));
                }
                for e in except {
                    meaning.push_str(&format!(" except {e}"));
                    members.insert(format!("{} nomatch", net_entry(*e)));
                }
                self.set(set_name(family, 'b', &meaning), SetKind::Net, members)
            }
        };
        Some(vec![Match::Set {
            name,
            dir: dir.peer_end(),
            negate: false,
        }])
    }

    /// A named port: resolved on each destination pod. For ingress the destinations are the
    /// policy's selected pods here; for egress, any pod in the cluster with that port (a peer
    /// match, if any, narrows it further).
    fn named_port(
        &mut self,
        key: &str,
        dir: Direction,
        name: &str,
        protocol: Protocol,
        selected: &[&Pod],
    ) -> Match {
        let meaning = match dir {
            Direction::Ingress => format!("in|{key}|{name}|{}", protocol.as_str()),
            Direction::Egress => format!("all|{name}|{}", protocol.as_str()),
        };
        let set = set_name(self.family, 'n', &meaning);
        let found = Match::Set {
            name: set.clone(),
            dir: SetDir::DstPort,
            negate: false,
        };
        if self.rs.sets.contains_key(&set) {
            return found;
        }
        let candidates: Vec<&Pod> = match dir {
            Direction::Ingress => selected.to_vec(),
            Direction::Egress => self.w.pods.iter().collect(),
        };
        let mut members = BTreeSet::new();
        for pod in candidates {
            if let Some(port) = pod.named_port(name, protocol) {
                for ip in self.ips(pod) {
                    members.insert(format!("{ip},{}:{port}", protocol.as_str()));
                }
            }
        }
        self.set(set, SetKind::IpPort, members);
        found
    }
}

/// The pods of one namespace (the model keeps pods sorted by namespace and name).
fn pods_of<'a>(w: &'a Workloads, namespace: &str) -> &'a [Pod] {
    let start = w.pods.partition_point(|p| p.namespace.as_str() < namespace);
    let end = w
        .pods
        .partition_point(|p| p.namespace.as_str() <= namespace);
    &w.pods[start..end]
}

fn is_v4(n: &IpNet) -> bool {
    matches!(n, IpNet::V4(_))
}

/// `hash:net` cannot hold a /0: 0.0.0.0/0 becomes its two halves.
pub(crate) fn split_default(n: IpNet) -> Vec<IpNet> {
    if n.prefix_len() > 0 {
        return vec![n];
    }
    n.subnets(1)
        .map(|s| s.collect())
        .unwrap_or_else(|_| vec![n])
}

/// A `hash:net` entry as `ipset save` prints it: a host route without its /32 or /128.
pub(crate) fn net_entry(n: IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}
