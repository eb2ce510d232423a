//! A new cluster view applied to a running node as a difference: only the peers that changed
//! (a rotated password re-read from its file), the originated pod CIDRs if they changed, and
//! the data plane's idea of which next hops are nodes.

use super::dataplane::Dataplane;
use crate::peers::{peer_config, peers_for, DerivedPeer};
use crate::state::NodeState;
use cluster::{ClusterView, Node};
use speaker::{Password, Speaker};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{error, info, warn};

pub(super) fn apply_peers(
    speaker: &Speaker,
    view: &ClusterView,
    me: &Node,
    current: &mut BTreeMap<IpAddr, DerivedPeer>,
) {
    let want: BTreeMap<IpAddr, DerivedPeer> = peers_for(view, me)
        .into_iter()
        .filter_map(with_password)
        .map(|p| (p.address, p))
        .collect();
    for (addr, old) in current.iter() {
        if !want.contains_key(addr) {
            info!(peer = %addr, kind = old.kind.as_str(), "peer removed from the cluster view");
            let _ = speaker.remove_peer(*addr);
        }
    }
    for (addr, p) in &want {
        let cfg = peer_config(view, me, p);
        let r = match current.get(addr) {
            None => {
                info!(peer = %addr, kind = p.kind.as_str(), asn = p.as_number,
                    md5 = p.password.is_some(), "peer added");
                speaker.add_peer(cfg)
            }
            Some(old) if old != p => speaker.update_peer(cfg),
            Some(_) => Ok(()),
        };
        if let Err(e) = r {
            error!(peer = %addr, error = %e, "peer rejected");
        }
    }
    *current = want;
}

/// The peer with its TCP MD5 key read from its password file, read afresh on every reload so a
/// rotated key reaches the speaker (which reconnects with it). A peer whose file cannot be read
/// is left out rather than tried without the key it is configured with.
fn with_password(mut p: DerivedPeer) -> Option<DerivedPeer> {
    let Some(path) = &p.password_file else {
        return Some(p);
    };
    match std::fs::read(path) {
        Ok(mut key) => {
            // `echo secret > file` and `kubectl create secret --from-file` leave a newline that
            // is not part of the key.
            if key.ends_with(b"\n") {
                key.pop();
                if key.ends_with(b"\r") {
                    key.pop();
                }
            }
            let key = Password::new(key);
            if !key.len_ok() {
                error!(peer = %p.address, file = %path.display(), bytes = key.as_bytes().len(),
                    "the password must be 1-80 bytes (TCP MD5); not peering");
                return None;
            }
            p.password = Some(key);
            Some(p)
        }
        Err(e) => {
            error!(peer = %p.address, file = %path.display(), error = %e,
                "cannot read the password file; not peering");
            None
        }
    }
}

/// Apply a new cluster view: only the peers that changed, the originated CIDR if it changed,
/// and the data plane's idea of who is a node. None (and nothing changed) when this node is
/// not in it.
pub(super) async fn apply_view(
    speaker: &Speaker,
    state: &NodeState,
    dp: &mut Dataplane,
    peers: &mut BTreeMap<IpAddr, DerivedPeer>,
    view: &ClusterView,
    me: &Node,
    new: Arc<ClusterView>,
) -> Option<(Arc<ClusterView>, Node)> {
    let Some(new_me) = new.node(&me.name).cloned() else {
        error!(node = %me.name, "this node is no longer in the cluster view; keeping the running one");
        return None;
    };
    if new.encapsulation != view.encapsulation
        || new.vxlan != view.vxlan
        || new_me.addresses != me.addresses
    {
        warn!("encapsulation or node address changed; restart the agent to apply that part");
    }
    if new.graceful_restart != view.graceful_restart {
        // The speaker's capability and timers are set when it starts (a restart is exactly
        // what they are for).
        warn!(new = ?new.graceful_restart, "gracefulRestart changed; it applies at the agent's next start");
    }
    if new_me.pod_cidrs != me.pod_cidrs {
        // Kubernetes never changes a node's podCIDRs once set; from a file it is an edit, and
        // pods already attached keep their addresses until the agent restarts.
        warn!(old = ?me.pod_cidrs, new = ?new_me.pod_cidrs,
            "pod CIDRs changed: announcing the new ones; restart the agent to move the tunnel address and CNI file");
        let _ = speaker.set_originated(new_me.pod_cidrs.clone());
    }
    if new_me.route_reflector_cluster_id != me.route_reflector_cluster_id {
        // Before the peers' roles change, so a new reflector's clients get reflected routes
        // as soon as they are its clients.
        info!(cluster_id = ?new_me.route_reflector_cluster_id, "this node's route reflector cluster ID changed");
        let _ = speaker.set_cluster_id(new_me.route_reflector_cluster_id);
    }
    apply_peers(speaker, &new, &new_me, peers);
    *state.peers.lock().expect("peers") = peers.clone();
    *state.reflectors.lock().expect("reflectors") = new.reflectors.clone();
    dp.set_view(&new).await;
    Some((new, new_me))
}
