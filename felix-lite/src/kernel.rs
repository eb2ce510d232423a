//! The netlink side: the one socket felix-lite writes routes through, and the one it listens on
//! for changes. Nothing else in the crate talks to the kernel.

use crate::error::Error;
use crate::message::{from_message, lookup_answer, lookup_message, to_delete_message, to_message};
use crate::plan::{Observed, Op};
use crate::route::KernelRoute;
use futures::channel::mpsc::UnboundedReceiver;
use futures::stream::{self, StreamExt, TryStreamExt};
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, MulticastGroup};
use std::net::IpAddr;

/// Requests in flight at once. Each answer is an ACK queued on our socket; the connection sends
/// everything queued before it reads again, so the window must keep the ACKs of one burst well
/// inside the socket's receive buffer (default 208 KiB, roughly 1 KiB per queued ACK).
const WINDOW: usize = 64;

/// The writer socket.
#[derive(Clone)]
pub struct Kernel {
    handle: Handle,
}

pub type Notifications =
    UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>;

/// A change the kernel announced for a main-table route.
#[derive(Debug, Clone)]
pub enum Notice {
    New(KernelRoute),
    Deleted(KernelRoute),
}

impl Kernel {
    /// Open the socket (in the calling thread's network namespace) and spawn its connection task.
    pub fn open() -> Result<Kernel, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Kernel { handle })
    }

    /// Subscribe to IPv4 and IPv6 route changes on a socket of their own, so notifications never
    /// queue behind (or between) our own requests' answers.
    pub fn subscribe() -> Result<Notifications, Error> {
        let (conn, _, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])
        .map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(messages)
    }

    /// Every main-table route of both families, split into ours and foreign.
    pub async fn dump(&self) -> Result<Observed, Error> {
        let mut seen = Observed::default();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = family;
            let mut routes = self.handle.route().get(m).execute();
            while let Some(m) = routes
                .try_next()
                .await
                .map_err(|e| Error::Netlink(e.to_string()))?
            {
                if let Some(k) = from_message(&m) {
                    seen.insert(k);
                }
            }
        }
        Ok(seen)
    }

    /// Apply `ops`, up to [`WINDOW`] in flight, and return each with its outcome, in any order.
    pub async fn apply(&self, ops: Vec<Op>) -> Vec<(Op, Result<(), Error>)> {
        stream::iter(ops)
            .map(|op| async move {
                let r = self.request(&op).await;
                (op, r)
            })
            .buffer_unordered(WINDOW)
            .collect()
            .await
    }

    async fn request(&self, op: &Op) -> Result<(), Error> {
        let (msg, flags) = match op {
            Op::Add(r) => (
                RouteNetlinkMessage::NewRoute(to_message(r)),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            Op::Replace(r) => (
                RouteNetlinkMessage::NewRoute(to_message(r)),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            Op::Delete(k) => (RouteNetlinkMessage::DelRoute(to_delete_message(k)), 0),
        };
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut answers = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| Error::Netlink(e.to_string()))?;
        while let Some(a) = answers.next().await {
            if let NetlinkPayload::Error(e) = a.payload {
                if e.code.is_some() {
                    let io = e.to_io();
                    return Err(Error::Refused {
                        op: op.to_string(),
                        errno: io.raw_os_error().unwrap_or(0),
                        message: io.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The gateway and interface the kernel uses towards `addr` (`ip route get`).
    pub async fn lookup(&self, addr: IpAddr) -> Result<(IpAddr, u32), Error> {
        let mut answers = self.handle.route().get(lookup_message(addr)).execute();
        match answers.try_next().await {
            Ok(Some(m)) => lookup_answer(addr, &m).ok_or(Error::Unresolvable(addr)),
            _ => Err(Error::Unresolvable(addr)),
        }
    }
}

/// A route notification as a [`Notice`], or `None` for anything else (other tables, links…).
pub fn notice(m: &NetlinkMessage<RouteNetlinkMessage>) -> Option<Notice> {
    match &m.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
            from_message(r).map(Notice::New)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => {
            from_message(r).map(Notice::Deleted)
        }
        _ => None,
    }
}
