//! TCP MD5 signatures (RFC 2385) on Linux sockets: `setsockopt(TCP_MD5SIG)`.
//!
//! Written by hand because no maintained crate wraps it: libc has the constant but not
//! `struct tcp_md5sig`, and neither socket2 nor nix has the option. The struct is the kernel's
//! UAPI (`include/uapi/linux/tcp.h`), stable since 2.6.20.

use crate::config::Password;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::AsRawFd;

#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; Password::MAX_LEN],
}

/// Set (or with `None` remove) the key for segments to and from `peer` on `sock`. A listening
/// socket hands its keys to the connections it accepts; a connecting one must have the key
/// before `connect`. On an IPv6 socket an IPv4 peer is given as `::ffff:a.b.c.d`, which the
/// kernel files as an IPv4 key.
pub(crate) fn set_key(sock: &impl AsRawFd, peer: IpAddr, key: Option<&Password>) -> io::Result<()> {
    // SAFETY: all-zero is a valid value for this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let v6_socket = socket_is_v6(sock)?;
    match (peer, v6_socket) {
        (IpAddr::V4(a), false) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(a).to_be();
        }
        (peer, true) => {
            let a: Ipv6Addr = match peer {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
        }
        (IpAddr::V6(_), false) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv6 peer's key cannot be set on an IPv4 socket",
            ))
        }
    }
    if let Some(k) = key {
        let bytes = k.as_bytes();
        if bytes.len() > Password::MAX_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TCP MD5 key longer than 80 bytes",
            ));
        }
        sig.keylen = bytes.len() as u16;
        sig.key[..bytes.len()].copy_from_slice(bytes);
    }
    // SAFETY: the pointer and length describe `sig`, which outlives the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const TcpMd5Sig as *const libc::c_void,
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    match r {
        0 => Ok(()),
        _ => {
            let e = io::Error::last_os_error();
            // Removing a key that was never set is not an error for the caller.
            if key.is_none() && e.raw_os_error() == Some(libc::ENOENT) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

fn socket_is_v6(sock: &impl AsRawFd) -> io::Result<bool> {
    let mut domain: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain` and `len` are valid for the duration of the call.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            &mut domain as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(domain == libc::AF_INET6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_has_the_kernels_size() {
        // sockaddr_storage (128) + flags + prefixlen + keylen (4) + ifindex (4) + key (80).
        assert_eq!(size_of::<TcpMd5Sig>(), 216);
    }
}
