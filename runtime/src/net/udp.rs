//! UDP: [`UdpSocket`], std's names and signatures.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;

use super::poller::Dir;
use super::source::Source;
use super::{each_addr, resolve};

/// A UDP socket: `std::net::UdpSocket` for green threads. Receives (and sends, when the
/// socket buffer is full) park only the calling green thread; from a plain OS thread they
/// block it. Timeouts apply to each call; a call that waits past its timeout fails with
/// `ErrorKind::TimedOut`.
///
/// # Examples
///
/// ```
/// use gort_runtime::net::UdpSocket;
///
/// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let to = b.local_addr().unwrap();
/// let h = gort_runtime::go!(move || {
///     let mut buf = [0u8; 16];
///     let (n, _) = b.recv_from(&mut buf).unwrap();
///     buf[..n].to_vec()
/// });
/// a.send_to(b"ping", to).unwrap();
/// assert_eq!(h.join().unwrap(), b"ping");
/// ```
pub struct UdpSocket {
    src: Source<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr` (host names resolved inside `gort::blocking`).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let s = each_addr(&resolve(addr)?, std::net::UdpSocket::bind)?;
        Ok(UdpSocket {
            src: Source::from_blocking(s)?,
        })
    }

    /// Receives one datagram and its sender's address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.src.io(Dir::Read, |s| s.recv_from(buf))
    }

    /// `recv_from` without taking the datagram off the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.src.io(Dir::Read, |s| s.peek_from(buf))
    }

    /// Sends one datagram to `addr` (the first address it resolves to, as std does).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to = *resolve(addr)?.first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        self.src.io(Dir::Write, |s| s.send_to(buf, to))
    }

    /// Sets the default peer (host names resolved inside `gort::blocking`) for `send` and
    /// `recv`, and filters received datagrams to it.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(&resolve(addr)?, |a| self.src.get().connect(a))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.src.io(Dir::Write, |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.io(Dir::Read, |s| s.recv(buf))
    }

    /// `recv` without taking the datagram off the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.io(Dir::Read, |s| s.peek(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().peer_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.src.get().set_broadcast(on)
    }

    /// `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.src.get().broadcast()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.src.get().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.src.get().ttl()
    }

    /// Another handle to the same socket (a duplicated fd, registered on its own).
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            src: Source::new(self.src.get().try_clone()?),
        })
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }

    /// The std socket, blocking again (deregistered from the runtime's poller).
    pub fn into_std(self) -> std::net::UdpSocket {
        self.src.into_inner()
    }
}

super::impl_timeouts!(UdpSocket);
super::impl_fd_traits!(UdpSocket, std::net::UdpSocket);

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}
