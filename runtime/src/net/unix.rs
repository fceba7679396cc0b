//! Unix-domain sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`], with the names
//! and signatures of `std::os::unix::net`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net as unet;
use std::path::Path;

pub use std::os::unix::net::SocketAddr;

use super::poller::Dir;
use super::source::Source;

/// A Unix-domain stream socket server: `std::os::unix::net::UnixListener` for green threads.
pub struct UnixListener {
    src: Source<unet::UnixListener>,
}

impl UnixListener {
    /// Binds to the path `path` (which must not exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Ok(UnixListener {
            src: Source::from_blocking(unet::UnixListener::bind(path)?)?,
        })
    }

    /// Waits for a connection (parking only the green thread).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, a) = self.src.io(Dir::Read, |l| l.accept())?;
        Ok((
            UnixStream {
                src: Source::from_blocking(s)?,
            },
            a,
        ))
    }

    /// An endless iterator of `accept` results.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            src: Source::new(self.src.get().try_clone()?),
        })
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }

    /// The std listener, blocking again.
    pub fn into_std(self) -> unet::UnixListener {
        self.src.into_inner()
    }
}

/// A Unix-domain stream: `std::os::unix::net::UnixStream` for green threads; `&UnixStream`
/// reads and writes too.
pub struct UnixStream {
    src: Source<unet::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket at `path`. (A Unix `connect` waits only when the listener's
    /// backlog is full; it runs inside `gort::blocking`.)
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let s = crate::blocking(|| unet::UnixStream::connect(path))?;
        Ok(UnixStream {
            src: Source::from_blocking(s)?,
        })
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = unet::UnixStream::pair()?;
        Ok((
            UnixStream {
                src: Source::from_blocking(a)?,
            },
            UnixStream {
                src: Source::from_blocking(b)?,
            },
        ))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().peer_addr()
    }

    /// Shuts down the read, write or both halves (wakes a reader waiting on this stream).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get().shutdown(how)
    }

    /// Another handle to the same connection.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            src: Source::new(self.src.get().try_clone()?),
        })
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }

    /// The std stream, blocking again.
    pub fn into_std(self) -> unet::UnixStream {
        self.src.into_inner()
    }
}

super::impl_stream_io!(UnixStream);

/// A Unix-domain datagram socket: `std::os::unix::net::UnixDatagram` for green threads.
pub struct UnixDatagram {
    src: Source<unet::UnixDatagram>,
}

impl UnixDatagram {
    /// Binds to the path `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            src: Source::from_blocking(unet::UnixDatagram::bind(path)?)?,
        })
    }

    /// A socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            src: Source::from_blocking(unet::UnixDatagram::unbound()?)?,
        })
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = unet::UnixDatagram::pair()?;
        Ok((
            UnixDatagram {
                src: Source::from_blocking(a)?,
            },
            UnixDatagram {
                src: Source::from_blocking(b)?,
            },
        ))
    }

    /// Sets the default peer.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.src.get().connect(path)
    }

    /// Sends one datagram to `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.src.io(Dir::Write, |s| s.send_to(buf, path))
    }

    /// Receives one datagram and its sender's address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.src.io(Dir::Read, |s| s.recv_from(buf))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.src.io(Dir::Write, |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.io(Dir::Read, |s| s.recv(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().peer_addr()
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get().shutdown(how)
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            src: Source::new(self.src.get().try_clone()?),
        })
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }

    /// The std socket, blocking again.
    pub fn into_std(self) -> unet::UnixDatagram {
        self.src.into_inner()
    }
}

super::impl_fd_traits!(UnixListener, unet::UnixListener);
super::impl_timeouts!(UnixStream);
super::impl_fd_traits!(UnixStream, unet::UnixStream);
super::impl_timeouts!(UnixDatagram);
super::impl_fd_traits!(UnixDatagram, unet::UnixDatagram);

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}
