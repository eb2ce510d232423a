//! A new cluster view applied to a running node as a difference: the peers (changed
//! make-before-break by [`Peering`]), the originated pod CIDRs if they changed, and the data
//! plane's idea of which next hops are nodes, and outgoing NAT (its setting and the pod CIDRs).

use super::dataplane::Dataplane;
use super::peering::Peering;
use crate::state::NodeState;
use cluster::{ClusterView, Node};
use speaker::Speaker;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Apply a new cluster view: only the peers that changed, the originated CIDR if it changed,
/// and the data plane's idea of who is a node. None (and nothing changed) when this node is
/// not in it.
pub(super) async fn apply_view(
    speaker: &Speaker,
    state: &NodeState,
    dp: &mut Dataplane,
    peering: &mut Peering,
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
    peering.apply(speaker, &new, &new_me, Some(me));
    peering.publish(state);
    *state.reflectors.lock().expect("reflectors") = new.reflectors.clone();
    // Outgoing NAT follows the view: its setting, and the pod CIDRs that keep their source.
    let nat = super::nat::nat_for(&new, &new_me);
    if new.nat_outgoing != view.nat_outgoing {
        info!(setting = %new.nat_outgoing.describe(), "outgoing NAT setting changed");
    }
    if nat != super::nat::nat_for(view, me) {
        state.firewall.set_nat(nat);
    }
    *state.nat.lock().expect("nat") = new.nat_outgoing.clone();
    dp.set_view(&new).await;
    Some((new, new_me))
}
