//! QUIC through a SOCKS5 proxy: a UDP socket for quinn whose datagrams go to the
//! proxy's UDP relay (RFC 1928 section 7), each wrapped in a SOCKS5 UDP header naming
//! the server, and whose incoming datagrams are taken from the relay only, unwrapped
//! and handed to quinn as if the server had sent them.
//!
//! The socket talks to the relay and nothing else: a datagram that does not come from
//! the relay, is fragmented (FRAG ≠ 0) or has a malformed header is dropped, and no
//! datagram is ever sent anywhere but the relay, so nothing reaches the server around
//! the proxy. The association's control connection lives in the socket, so the relay
//! forwards for as long as the QUIC connection uses it.

use std::fmt;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::ReadBuf;

use crate::net::{put_socks_address, SocksTarget, UdpTarget};

/// The SOCKS5 UDP request header for `target` (RSV, FRAG 0, then the address as in a
/// SOCKS5 request). A name is at most 255 bytes ([`crate::net::Dialer::udp_route`]
/// refuses longer ones).
pub(crate) fn udp_header(target: &UdpTarget) -> Vec<u8> {
    let mut h = vec![0, 0, 0];
    let socks = match target {
        UdpTarget::Addr(addr) => SocksTarget::Addr(*addr),
        UdpTarget::Name(name, port) => SocksTarget::Name(name, *port),
    };
    put_socks_address(&mut h, &socks);
    h
}

/// The length of the SOCKS5 UDP header at the start of `datagram`, or `None` when it
/// is malformed or fragmented.
pub(crate) fn header_len(datagram: &[u8]) -> Option<usize> {
    let (&frag, rest) = datagram.get(2..)?.split_first()?;
    if datagram[0] != 0 || datagram[1] != 0 || frag != 0 {
        return None;
    }
    let len = match rest.first()? {
        0x01 => 4 + 4 + 2,
        0x04 => 4 + 16 + 2,
        0x03 => 4 + 1 + usize::from(*rest.get(1)?) + 2,
        _ => return None,
    };
    (datagram.len() >= len).then_some(len)
}

/// quinn's socket for a QUIC connection through a SOCKS5 relay.
pub(crate) struct Socks5UdpSocket {
    socket: Arc<tokio::net::UdpSocket>,
    relay: SocketAddr,
    header: Vec<u8>,
    /// The server's address as quinn knows it.
    peer: SocketAddr,
    // Kept open: the proxy ends the association when it closes.
    _control: tokio::net::TcpStream,
}

impl fmt::Debug for Socks5UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socks5UdpSocket")
            .field("relay", &self.relay)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Socks5UdpSocket {
    /// A socket bound to an ephemeral port of the relay's address family. `peer` is
    /// the address quinn is told the server has (with `socks5h://`, a stand-in: the
    /// proxy resolves the name).
    pub(crate) fn new(
        control: tokio::net::TcpStream,
        relay: SocketAddr,
        target: &UdpTarget,
        peer: SocketAddr,
    ) -> io::Result<Self> {
        let bind: SocketAddr = match relay.ip() {
            IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let std_socket = std::net::UdpSocket::bind(bind)?;
        std_socket.set_nonblocking(true)?;
        Ok(Socks5UdpSocket {
            socket: Arc::new(tokio::net::UdpSocket::from_std(std_socket)?),
            relay,
            header: udp_header(target),
            peer,
            _control: control,
        })
    }
}

#[derive(Debug)]
struct Writable(Arc<tokio::net::UdpSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for Socks5UdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self.socket.clone()))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let mut datagram = Vec::with_capacity(self.header.len() + transmit.contents.len());
        datagram.extend_from_slice(&self.header);
        datagram.extend_from_slice(transmit.contents);
        self.socket.try_send_to(&datagram, self.relay).map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            let mut read = ReadBuf::new(buf);
            let from = ready!(self.socket.poll_recv_from(cx, &mut read))?;
            let len = read.filled().len();
            if from != self.relay {
                continue;
            }
            let Some(header) = header_len(&buf[..len]) else {
                continue;
            };
            buf.copy_within(header..len, 0);
            let payload = len - header;
            *slot = RecvMeta {
                addr: self.peer,
                len: payload,
                stride: payload,
                ecn: None,
                dst_ip: None,
            };
            return Poll::Ready(Ok(1));
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_dropped() {
        let v4 = udp_header(&UdpTarget::Addr("127.0.0.2:443".parse().expect("addr")));
        assert_eq!(v4, [0, 0, 0, 1, 127, 0, 0, 2, 1, 187]);
        assert_eq!(header_len(&[&v4[..], b"quic"].concat()), Some(10));
        let name = udp_header(&UdpTarget::Name("h3.test".into(), 8443));
        assert_eq!(header_len(&name), Some(4 + 1 + 7 + 2));
        let v6 = udp_header(&UdpTarget::Addr("[::1]:1".parse().expect("addr")));
        assert_eq!(header_len(&v6), Some(22));
        let mut fragmented = v4.clone();
        fragmented[2] = 1;
        assert_eq!(header_len(&fragmented), None);
        for bad in [
            &[][..],
            &[0, 0],
            &[0, 0, 0, 9],
            &[0, 0, 0, 1, 1, 2],
            &[1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 3, 200, 1],
        ] {
            assert_eq!(header_len(bad), None, "{bad:?}");
        }
    }
}
