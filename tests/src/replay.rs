//! A BGP sender for ingest benchmarks: opens a session, then writes pre-encoded UPDATEs as
//! fast as the receiver's TCP window takes them, then End-of-RIB. Nothing is encoded while
//! the clock runs, so what is measured is the receiver (ExaBGP's own start-up and pacing were
//! in the earlier figures).
//!
//! The messages are written by hand here on purpose: the sender must not share the code under
//! test (Twill's encoder), and the format is a few fixed bytes (RFC 4271 §4.3).

use std::net::{Ipv4Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Pre-encoded UPDATEs announcing `count` /24s.
pub struct Feed {
    pub bytes: Vec<u8>,
    pub prefixes: usize,
    pub messages: usize,
}

fn header(out: &mut Vec<u8>, kind: u8, body_len: usize) {
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&((19 + body_len) as u16).to_be_bytes());
    out.push(kind);
}

/// `count` consecutive /24s from `first`, next hop `next_hop`, AS_PATH `[asn]` (4-octet),
/// ORIGIN IGP, packed into UPDATEs of at most 4,096 bytes.
pub fn feed(first: Ipv4Addr, count: usize, next_hop: Ipv4Addr, asn: u32) -> Feed {
    let mut attrs = vec![0x40, 1, 1, 0]; // ORIGIN IGP
    attrs.extend_from_slice(&[0x40, 2, 6, 2, 1]); // AS_PATH: one AS_SEQUENCE of one AS
    attrs.extend_from_slice(&asn.to_be_bytes());
    attrs.extend_from_slice(&[0x40, 3, 4]); // NEXT_HOP
    attrs.extend_from_slice(&next_hop.octets());
    let per_message = (4096 - 19 - 4 - attrs.len()) / 4;
    let base = u32::from(first) >> 8;
    let mut bytes = Vec::with_capacity(count / per_message * 4096 + 4096);
    let mut messages = 0;
    let mut done = 0;
    while done < count {
        let n = per_message.min(count - done);
        header(&mut bytes, 2, 4 + attrs.len() + 4 * n);
        bytes.extend_from_slice(&0u16.to_be_bytes()); // no withdrawn routes
        bytes.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&attrs);
        for k in 0..n {
            let net = (base + (done + k) as u32) << 8;
            bytes.push(24);
            bytes.extend_from_slice(&net.to_be_bytes()[..3]);
        }
        done += n;
        messages += 1;
    }
    // End-of-RIB for IPv4 unicast: an empty UPDATE.
    header(&mut bytes, 2, 4);
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    Feed {
        bytes,
        prefixes: count,
        messages,
    }
}

fn open(asn: u32, id: Ipv4Addr) -> Vec<u8> {
    // Capabilities: multiprotocol IPv4 unicast; 4-octet AS.
    let mut caps = vec![2, 6, 1, 4, 0, 1, 0, 1];
    caps.extend_from_slice(&[2, 6, 65, 4]);
    caps.extend_from_slice(&asn.to_be_bytes());
    let my_as = if asn > 65535 { 23456u16 } else { asn as u16 };
    let mut body = vec![4];
    body.extend_from_slice(&my_as.to_be_bytes());
    body.extend_from_slice(&180u16.to_be_bytes());
    body.extend_from_slice(&id.octets());
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    let mut out = Vec::new();
    header(&mut out, 1, body.len());
    out.extend_from_slice(&body);
    out
}

fn keepalive() -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, 4, 0);
    out
}

/// Read one message; its type.
async fn read_message(s: &mut TcpStream) -> std::io::Result<u8> {
    let mut h = [0u8; 19];
    s.read_exact(&mut h).await?;
    let len = u16::from_be_bytes([h[16], h[17]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(19)];
    s.read_exact(&mut body).await?;
    if h[18] == 3 {
        return Err(std::io::Error::other(format!(
            "NOTIFICATION {}/{}",
            body.first().copied().unwrap_or(0),
            body.get(1).copied().unwrap_or(0)
        )));
    }
    Ok(h[18])
}

/// An Established session from `local` to `remote`: our OPEN, theirs, KEEPALIVEs both ways.
pub async fn establish(
    local: Ipv4Addr,
    remote: SocketAddr,
    asn: u32,
) -> std::io::Result<TcpStream> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut s = loop {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(local.into(), 0))?;
        match sock.connect(remote).await {
            Ok(s) => break s,
            // The receiver may not listen yet (BIRD's protocol still starting).
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "connect: retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
    s.set_nodelay(true)?;
    s.write_all(&open(asn, local)).await?;
    let mut open_seen = false;
    loop {
        match read_message(&mut s).await? {
            1 => {
                open_seen = true;
                s.write_all(&keepalive()).await?;
            }
            4 if open_seen => return Ok(s),
            _ => {}
        }
    }
}

/// Write the feed, then keep reading (KEEPALIVEs) so the receiver never blocks on us; answer
/// with KEEPALIVEs. Returns when the connection ends.
pub async fn replay(s: TcpStream, feed: &[u8]) -> std::io::Result<()> {
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    w.write_all(feed).await?;
    let ka = keepalive();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                if w.write_all(&ka).await.is_err() {
                    break;
                }
            }
            _ = async { while !reader.is_finished() { tokio::time::sleep(std::time::Duration::from_millis(200)).await } } => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_is_well_formed_updates_then_end_of_rib() {
        let f = feed(
            "16.0.0.0".parse().unwrap(),
            2500,
            "10.0.1.1".parse().unwrap(),
            65000,
        );
        let mut at = 0;
        let mut prefixes = 0;
        let mut messages = 0;
        let mut last_nlri = None;
        while at < f.bytes.len() {
            assert_eq!(&f.bytes[at..at + 16], &[0xff; 16]);
            let len = u16::from_be_bytes([f.bytes[at + 16], f.bytes[at + 17]]) as usize;
            assert!(len <= 4096);
            assert_eq!(f.bytes[at + 18], 2);
            let body = &f.bytes[at + 19..at + len];
            let attrs = u16::from_be_bytes([body[2], body[3]]) as usize;
            let nlri = &body[4 + attrs..];
            assert_eq!(nlri.len() % 4, 0);
            prefixes += nlri.len() / 4;
            if !nlri.is_empty() {
                messages += 1;
                last_nlri = Some(nlri[nlri.len() - 4..].to_vec());
            }
            at += len;
        }
        assert_eq!((prefixes, messages), (2500, f.messages));
        // The 2,500th /24 from 16.0.0.0 is 16.9.195.0.
        assert_eq!(last_nlri.unwrap(), vec![24, 16, 9, 195]);
        // Ends with End-of-RIB.
        assert_eq!(&f.bytes[f.bytes.len() - 4..], &[0, 0, 0, 0]);
    }
}
