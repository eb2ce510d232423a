//! When the node is ready: every cluster session has completed its first exchange, or the
//! timeout has passed. Only then does the data plane get the complete route set, so a restart
//! never deletes an adopted route that BGP is about to confirm.

use crate::peers::{DerivedPeer, PeerKind};
use crate::state::NodeState;
use speaker::{PeerSnapshot, State};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tracing::warn;

/// Ready once every mesh / reflector session has completed an initial exchange (Established and
/// End-of-RIB received), or the timeout has passed. Latched by the caller.
pub(super) async fn ready_now(
    state: &NodeState,
    peers: &BTreeMap<IpAddr, DerivedPeer>,
    timeout: Duration,
) -> bool {
    if state.started.elapsed() >= timeout {
        warn!(
            ?timeout,
            "ready by timeout: some cluster sessions never completed"
        );
        return true;
    }
    let Ok(snap) = state.speaker.snapshot().await else {
        return false;
    };
    peers
        .values()
        .filter(|p| p.kind != PeerKind::External)
        .all(|p| first_exchange_done(&snap, p.address))
}

/// Whether the session with `peer` has completed an initial exchange: Established and
/// End-of-RIB received.
pub(super) fn first_exchange_done(snap: &[PeerSnapshot], peer: IpAddr) -> bool {
    snap.iter()
        .any(|s| s.address == peer && s.state == State::Established && s.end_of_rib_received)
}
