//! [`PollFd`]: readiness waiting for any non-blocking file descriptor (in the spirit of
//! tokio's `AsyncFd`, without async).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use super::poller::Dir;
use super::source::Source;

/// Any file descriptor — a pipe, an eventfd, inotify, a serial port, a socket gort has no
/// type for — registered with the runtime's poller, so that waiting for it to become
/// readable or writable parks only the calling green thread (a plain OS thread blocks in
/// `poll(2)`).
///
/// `new` makes the fd non-blocking. The poller is edge-triggered: it reports *changes* of
/// readiness. So the way to use a `PollFd` is [`read_with`](PollFd::read_with) /
/// [`write_with`](PollFd::write_with), which try the operation and wait only after it
/// returned `WouldBlock`; call [`readable`](PollFd::readable) / [`writable`](PollFd::writable)
/// directly only after an operation returned `WouldBlock` (waiting on an fd that is already
/// readable, with nothing having drained it, may wait for the next change).
///
/// An fd epoll refuses (a regular file, which is always ready) or cannot take (its watch
/// limit reached) still works: it is not registered, and its waits run `poll(2)` inside
/// [`blocking`](crate::blocking).
///
/// # Examples
///
/// ```
/// use gort_runtime::net::PollFd;
/// use std::io::{Read, Write};
///
/// // Any fd will do; here one end of a std socket pair.
/// let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
/// let r = PollFd::new(r).unwrap();
/// let h = gort_runtime::go!(move || {
///     let mut buf = [0u8; 5];
///     let n = r.read_with(|mut f| f.read(&mut buf)).unwrap();
///     buf[..n].to_vec()
/// });
/// w.write_all(b"hello").unwrap();
/// assert_eq!(h.join().unwrap(), b"hello");
/// ```
pub struct PollFd<T: AsRawFd> {
    src: Source<T>,
}

impl<T: AsRawFd> PollFd<T> {
    /// Makes `inner`'s fd non-blocking and registers it with the poller.
    pub fn new(inner: T) -> io::Result<PollFd<T>> {
        Ok(PollFd {
            src: Source::from_blocking(inner)?,
        })
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        self.src.get()
    }

    /// Deregisters the fd, makes it blocking again and returns the wrapped value.
    pub fn into_inner(self) -> T {
        self.src.into_inner()
    }

    /// Runs `f` until it returns something other than `WouldBlock` (or `Interrupted`),
    /// waiting for the fd to become readable in between.
    pub fn read_with<R>(&self, f: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.src.io(Dir::Read, f)
    }

    /// Runs `f` until it returns something other than `WouldBlock` (or `Interrupted`),
    /// waiting for the fd to become writable in between.
    pub fn write_with<R>(&self, f: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.src.io(Dir::Write, f)
    }

    /// Waits until the fd may be readable (after an operation returned `WouldBlock`).
    pub fn readable(&self) -> io::Result<()> {
        self.src.wait(Dir::Read, None)
    }

    /// Waits until the fd may be writable (after an operation returned `WouldBlock`).
    pub fn writable(&self) -> io::Result<()> {
        self.src.wait(Dir::Write, None)
    }

    /// `readable`, failing with `TimedOut` after `timeout`.
    pub fn readable_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.src.wait(Dir::Read, Some(Instant::now() + timeout))
    }

    /// `writable`, failing with `TimedOut` after `timeout`.
    pub fn writable_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.src.wait(Dir::Write, Some(Instant::now() + timeout))
    }
}

impl<T: AsRawFd> AsRawFd for PollFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.src.get().as_raw_fd()
    }
}

impl<T: AsRawFd + AsFd> AsFd for PollFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.src.get().as_fd()
    }
}

impl<T: AsRawFd + fmt::Debug> fmt::Debug for PollFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollFd")
            .field("inner", self.get_ref())
            .finish()
    }
}
