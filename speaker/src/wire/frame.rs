//! Framing: find message boundaries in a byte stream and reject bad headers (RFC 4271 §6.1).
//! netgauze accepts UPDATEs of any length whatever was negotiated, so the limit lives here.

use super::msg_type;
use crate::notification::{code, header, Notification};

pub const HEADER_LEN: usize = 19;
pub const MAX_MESSAGE: usize = 4096;
pub const MAX_EXTENDED_MESSAGE: usize = 65535;

/// Length of the first complete message in `buf`, `None` if more bytes are needed, or the
/// NOTIFICATION a bad header calls for. `max` is 4096 unless Extended Message was negotiated;
/// OPEN and KEEPALIVE stay at 4096 regardless (RFC 8654 §4).
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        // A wrong marker is reported as soon as its bytes are in, not after a full header.
        if buf.iter().take(16).any(|b| *b != 0xff) {
            return Err(Notification::new(
                code::MESSAGE_HEADER,
                header::CONNECTION_NOT_SYNCHRONIZED,
                Vec::new(),
            ));
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::new(
            code::MESSAGE_HEADER,
            header::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let kind = buf[18];
    let bad_length = || {
        Notification::new(
            code::MESSAGE_HEADER,
            header::BAD_MESSAGE_LENGTH,
            (len as u16).to_be_bytes().to_vec(),
        )
    };
    let (min, kind_max) = match kind {
        msg_type::OPEN => (29, MAX_MESSAGE),
        msg_type::UPDATE => (23, max),
        msg_type::NOTIFICATION => (21, max),
        msg_type::KEEPALIVE => (19, 19),
        msg_type::ROUTE_REFRESH => (23, max),
        other => {
            return Err(Notification::new(
                code::MESSAGE_HEADER,
                header::BAD_MESSAGE_TYPE,
                vec![other],
            ))
        }
    };
    if len < min || len > kind_max {
        return Err(bad_length());
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u16, kind: u8) -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&len.to_be_bytes());
        v.push(kind);
        v
    }

    #[test]
    fn keepalive_is_a_whole_frame() {
        assert_eq!(frame_len(&hdr(19, 4), MAX_MESSAGE), Ok(Some(19)));
    }

    #[test]
    fn partial_input_asks_for_more() {
        assert_eq!(frame_len(&hdr(19, 4)[..10], MAX_MESSAGE), Ok(None));
        let mut upd = hdr(40, 2);
        upd.extend_from_slice(&[0; 10]);
        assert_eq!(frame_len(&upd, MAX_MESSAGE), Ok(None));
    }

    #[test]
    fn bad_marker_is_connection_not_synchronized() {
        let mut v = hdr(19, 4);
        v[3] = 0;
        let n = frame_len(&v, MAX_MESSAGE).unwrap_err();
        assert_eq!((n.code, n.subcode), (1, 1));
    }

    #[test]
    fn bad_type_carries_the_type() {
        let n = frame_len(&hdr(19, 9), MAX_MESSAGE).unwrap_err();
        assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![9]));
    }

    #[test]
    fn bad_lengths_carry_the_length() {
        for (len, kind) in [
            (18u16, 4u8),
            (20, 4),
            (28, 1),
            (22, 2),
            (20, 3),
            (22, 5),
            (4097, 2),
        ] {
            let n = frame_len(&hdr(len, kind), MAX_MESSAGE).unwrap_err();
            assert_eq!((n.code, n.subcode), (1, 2), "len {len} type {kind}");
            assert_eq!(n.data, len.to_be_bytes().to_vec());
        }
    }

    #[test]
    fn extended_message_lifts_the_update_limit_only() {
        assert_eq!(frame_len(&hdr(5000, 2), MAX_EXTENDED_MESSAGE), Ok(None));
        assert!(frame_len(&hdr(5000, 1), MAX_EXTENDED_MESSAGE).is_err());
    }
}
