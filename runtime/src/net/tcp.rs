//! TCP: [`TcpListener`] and [`TcpStream`], std's names and signatures.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::poller::Dir;
use super::source::Source;
use super::{each_addr, resolve, socket_addr_raw};

/// A TCP socket server, listening for connections: `std::net::TcpListener` for green
/// threads. `accept` parks only the calling green thread until a connection arrives.
///
/// # Examples
///
/// ```
/// use gort_runtime::net::{TcpListener, TcpStream};
/// use std::io::{Read, Write};
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// let server = gort_runtime::go!(move || {
///     let (mut conn, _) = listener.accept().unwrap();
///     let mut buf = [0u8; 5];
///     conn.read_exact(&mut buf).unwrap();
///     conn.write_all(&buf).unwrap();
/// });
/// let client = gort_runtime::go!(move || {
///     let mut c = TcpStream::connect(addr).unwrap();
///     c.write_all(b"hello").unwrap();
///     let mut buf = [0u8; 5];
///     c.read_exact(&mut buf).unwrap();
///     buf
/// });
/// server.join().unwrap();
/// assert_eq!(&client.join().unwrap(), b"hello");
/// ```
pub struct TcpListener {
    src: Source<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (host names are resolved inside `gort::blocking`); each resolved
    /// address is tried in turn, as std does.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let l = each_addr(&resolve(addr)?, std::net::TcpListener::bind)?;
        // std listens with a backlog of 128; a server with a green thread per connection
        // meets bursts of thousands of connects, and an overflowing backlog drops SYNs
        // (clients then retry after 1 s, 3 s, ...). Listen again with the system's maximum,
        // as Go does (`listen` on a listening socket just updates the backlog).
        // SAFETY: `listen` on the socket we own; a failure leaves the old backlog.
        unsafe { libc::listen(l.as_raw_fd(), max_backlog()) };
        Ok(TcpListener {
            src: Source::from_blocking(l)?,
        })
    }

    /// Waits for a connection (parking only the green thread) and returns it with the
    /// peer's address.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = self.src.io(Dir::Read, |l| l.accept())?;
        Ok((TcpStream::from_std_blocking(s)?, a))
    }

    /// An endless iterator of `accept` results.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }

    /// Another handle to the same socket (a duplicated fd, registered on its own).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            src: Source::new(self.src.get().try_clone()?),
        })
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.src.get().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.src.get().ttl()
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }

    /// The std listener, blocking again (deregistered from the runtime's poller).
    pub fn into_std(self) -> std::net::TcpListener {
        self.src.into_inner()
    }
}

/// The largest listen backlog the system allows (`net.core.somaxconn`, read once; Go reads
/// the same), capped at 65,535.
fn max_backlog() -> libc::c_int {
    static N: std::sync::OnceLock<libc::c_int> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<libc::c_int>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(libc::SOMAXCONN)
            .min(65_535)
    })
}

/// `TcpListener::incoming`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A TCP connection: `std::net::TcpStream` for green threads. Reads, writes and connects
/// park only the calling green thread; `&TcpStream` reads and writes too, so one green
/// thread can read while another writes. From a plain OS thread the same calls block that
/// thread.
///
/// Timeouts (`set_read_timeout`, `set_write_timeout`) apply to each call, as std's do; a
/// call that waits past its timeout fails with `ErrorKind::TimedOut`.
pub struct TcpStream {
    src: Source<std::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr` (host names resolved inside `gort::blocking`), trying each
    /// address in turn.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(&resolve(addr)?, |a| connect(&a, None))
    }

    /// Connects to `addr`, failing with `TimedOut` after `timeout`. A zero timeout is
    /// `InvalidInput`, as in std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        connect(addr, Some(Instant::now() + timeout))
    }

    fn from_std_blocking(s: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            src: Source::from_blocking(s)?,
        })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }

    /// Shuts down the read, write or both halves. A green thread waiting to read on this
    /// stream (through another reference) wakes up and reads end-of-file: the way to stop a
    /// reader from another green thread, like closing a connection in Go.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get().shutdown(how)
    }

    /// Another handle to the same connection (a duplicated fd, registered on its own).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            src: Source::new(self.src.get().try_clone()?),
        })
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.src.get().set_nodelay(nodelay)
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.src.get().nodelay()
    }

    /// Reads without taking the data out of the socket's queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.io(Dir::Read, |s| s.peek(buf))
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.src.get().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.src.get().ttl()
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }

    /// The std stream, blocking again (deregistered from the runtime's poller).
    pub fn into_std(self) -> std::net::TcpStream {
        self.src.into_inner()
    }
}

/// A non-blocking connect to `addr`: the G parks until the socket is writable, then reads
/// `SO_ERROR` (a refused port: `ConnectionRefused`).
fn connect(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: a plain system call; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(crate::errno::last_os_error());
    }
    // SAFETY: a fresh socket we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (storage, len) = socket_addr_raw(addr);
    let r = loop {
        // SAFETY: `storage` holds a valid address of `len` bytes for this family.
        let r =
            unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
        if r == 0 {
            break Ok(());
        }
        let e = crate::errno::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINPROGRESS) => break Err(None),
            _ => break Err(Some(e)),
        }
    };
    let stream = TcpStream {
        src: Source::new(std::net::TcpStream::from(owned)),
    };
    match r {
        Ok(()) => Ok(stream),
        Err(Some(e)) => Err(e),
        Err(None) => {
            // In progress: writable once connected or failed.
            stream.src.wait(Dir::Write, deadline)?;
            loop {
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
                // Connected, or (a spurious wake-up) still in progress: peer_addr says.
                match stream.peer_addr() {
                    Ok(_) => return Ok(stream),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                        stream.src.wait(Dir::Write, deadline)?
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

super::impl_stream_io!(TcpStream);

super::impl_fd_traits!(TcpListener, std::net::TcpListener);
super::impl_timeouts!(TcpStream);
super::impl_fd_traits!(TcpStream, std::net::TcpStream);

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}
