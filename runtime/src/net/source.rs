//! `Source<T>`: a non-blocking fd (inside a std type `T`) registered with the poller, and
//! the one loop every socket operation goes through: try the call; on `WouldBlock`, wait for
//! readiness (a G parks on the poll descriptor; a plain OS thread blocks in `poll(2)`);
//! retry.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::poller::{poller, timed_out, Dir, PollDesc, Since};
use crate::sched::current_g;

/// A registered, non-blocking fd, owned through the std type `T` that closes it.
pub(crate) struct Source<T: AsRawFd> {
    inner: ManuallyDrop<T>,
    /// None if the poller refused the fd (then a G waits inside `blocking`, in `poll(2)`).
    desc: Option<&'static PollDesc>,
    /// Read and write timeouts in nanoseconds, 0 for none (per call, like `SO_RCVTIMEO`).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// A stream read returned less than asked: the socket's receive queue was empty right
    /// after it, so the next read waits for readiness before its system call instead of
    /// making one that would only say `EAGAIN` (tokio does the same). `DRAINED` plus the
    /// read direction's event count as read before that short read's system call (the
    /// wait compares against it, `Since::Edges`), or 0. A hint: plain loads and stores
    /// (Relaxed); two readers that both take it both wait correctly.
    drained: AtomicU64,
}

/// The flag bit of `Source::drained` (the low 32 bits hold the event count).
const DRAINED: u64 = 1 << 32;

impl<T: AsRawFd> Source<T> {
    /// Takes `inner`, already non-blocking, and registers its fd.
    pub(crate) fn new(inner: T) -> Source<T> {
        let desc = poller().register(inner.as_raw_fd()).ok();
        Source {
            inner: ManuallyDrop::new(inner),
            desc,
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            drained: AtomicU64::new(0),
        }
    }

    /// Makes `inner` non-blocking and takes it.
    pub(crate) fn from_blocking(inner: T) -> io::Result<Source<T>> {
        set_nonblocking(inner.as_raw_fd(), true)?;
        Ok(Source::new(inner))
    }

    pub(crate) fn get(&self) -> &T {
        &self.inner
    }

    /// Deregisters the fd, makes it blocking again and gives back the std type.
    pub(crate) fn into_inner(self) -> T {
        let mut me = ManuallyDrop::new(self);
        me.deregister();
        // Best effort: a std type that stays non-blocking would surprise its user, but
        // failing here could only mean the fd is already broken.
        let _ = set_nonblocking(me.inner.as_raw_fd(), false);
        // SAFETY: `me` is never dropped, so `inner` is taken out exactly once.
        unsafe { ManuallyDrop::take(&mut me.inner) }
    }

    fn deregister(&mut self) {
        if let Some(d) = self.desc.take() {
            poller().deregister(d, self.inner.as_raw_fd());
        }
    }

    /// Runs `f` until it does not return `WouldBlock`, waiting for `dir` in between.
    pub(crate) fn io<R>(&self, dir: Dir, f: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        // Reads (accept and datagrams included) look first: a reader that waits often would
        // otherwise pay a second system call per wait. Writes rarely wait, and the look would
        // touch the write direction's line on every one.
        self.io_until(dir, self.deadline(dir), dir == Dir::Read, f)
            .map(|(r, _)| r)
    }

    /// `io` with the call's deadline already computed. Also returns the direction's event
    /// count as read before the call that succeeded, when `look_first` asks for it (a
    /// stream read keeps it for its next read: `read_stream`); 0 otherwise.
    ///
    /// A wait after `EAGAIN` parks only if no readiness event has come since a look at the
    /// event count taken before a call that said `EAGAIN` (`Since::Edges`). So a G that got
    /// `EAGAIN` just before an event, and reaches the lock just after it, retries, even if
    /// the event found no waiter or woke another G: several G's accepting on one listener,
    /// or reading one stream, never leave a connection or bytes behind a parked G. Without
    /// `look_first` the look is taken only after a first `EAGAIN`, followed by one more try
    /// (so a call that succeeds, the usual case, costs no look).
    fn io_until<R>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        look_first: bool,
        mut f: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<(R, u32)> {
        let mut look = look_first;
        loop {
            let seen = if look {
                self.desc.map(|d| d.edges(dir))
            } else {
                None
            };
            // In a frame of its own: `f` reads `errno`, and this loop parks in between
            // (`errno.rs`).
            match crate::errno::attempt(&mut f, &*self.inner) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map(|r| (r, seen.unwrap_or(0))),
            }
            if seen.is_none() && self.desc.is_some() {
                // `EAGAIN` with no look before it: look, and try once more.
                look = true;
                continue;
            }
            if let Err(e) = self.wait_since(dir, deadline, seen.map_or(Since::Token, Since::Edges))
            {
                return self.last_try(e, &mut f).map(|r| (r, 0));
            }
            look = look_first;
        }
    }

    /// `io` for a read of up to `len` bytes from a *stream* socket, skipping the system call
    /// that would only say `EAGAIN` after a short read.
    ///
    /// Why this is safe with edge-triggered epoll: a short read (0 < n < len) took everything
    /// queued at that moment; any byte that arrives later raises a new readable edge, which
    /// bumps the direction's event count past the one read before that short read (the
    /// wait compares against it, `Since::Edges`) or wakes the waiter. So waiting first
    /// never misses data; at worst (an edge raised during the short read itself) the wait
    /// returns at once and the read finds `EAGAIN`, as it would have without the hint. The
    /// one thing that raises no later edge is a hang-up that came with the data (end of
    /// file, or an error, is a state): the wait returns at once once the poller has seen
    /// one (`wait_unless_hup`), and if it has not yet, its event is still to come. Only for
    /// green threads on a registered fd. (Found by the Unix-socket test: a `read_to_end` of
    /// a message sent with its shutdown hung.)
    pub(crate) fn read_stream(
        &self,
        len: usize,
        f: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let deadline = self.deadline(Dir::Read);
        let hint = self.drained.load(Ordering::Relaxed);
        if hint != 0 {
            self.drained.store(0, Ordering::Relaxed);
            if let Some(d) = self.desc.filter(|_| len > 0 && !current_g().is_null()) {
                match d.wait_unless_hup(Dir::Read, deadline, Since::Edges(hint as u32)) {
                    // The hint only spares a system call: past the deadline, make the call
                    // (below), which times out only if it finds nothing (`last_try`).
                    Err(e) if e.kind() != io::ErrorKind::TimedOut => return Err(e),
                    _ => {}
                }
            }
        }
        let (n, seen) = self.io_until(Dir::Read, deadline, true, f)?;
        if n > 0 && n < len {
            self.drained
                .store(DRAINED | u64::from(seen), Ordering::Relaxed);
        }
        Ok(n)
    }

    /// A call whose wait ended in `e`. A timeout makes the call once more before it is
    /// reported: bytes (or room) may have come whose edge no M has polled yet, and a std
    /// call with a timeout times out only if nothing was there at its deadline. (After a
    /// short read, `read_stream`'s wait comes before any system call of the read: there
    /// this is its only one.) Out of line and cold, off the round trip's frames.
    #[cold]
    #[inline(never)]
    fn last_try<R>(&self, e: io::Error, f: &mut impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        if e.kind() != io::ErrorKind::TimedOut {
            return Err(e);
        }
        match crate::errno::attempt(f, &*self.inner) {
            Err(again)
                if matches!(
                    again.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Err(e)
            }
            r => r,
        }
    }

    /// Waits until `dir` may be ready (or the deadline passes: `TimedOut`), with no system
    /// call to compare against: a readiness event that came while nobody waited counts,
    /// once (`Since::Token`).
    pub(crate) fn wait(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.wait_since(dir, deadline, Since::Token)
    }

    /// `wait`, comparing as `since` says (see `Since`).
    fn wait_since(&self, dir: Dir, deadline: Option<Instant>, since: Since) -> io::Result<()> {
        let fd = self.inner.as_raw_fd();
        match self.desc {
            Some(d) if !current_g().is_null() => d.wait(dir, deadline, since),
            Some(_) => poll_fd(fd, dir, deadline),
            None => poll_fd_blocking(fd, dir, deadline),
        }
    }

    fn deadline(&self, dir: Dir) -> Option<Instant> {
        let ns = match dir {
            Dir::Read => self.read_timeout.load(Ordering::Relaxed),
            Dir::Write => self.write_timeout.load(Ordering::Relaxed),
        };
        (ns != 0).then(|| Instant::now() + Duration::from_nanos(ns))
    }

    /// std's `set_read_timeout`/`set_write_timeout`: `Some(ZERO)` is `InvalidInput`.
    pub(crate) fn set_timeout(&self, dir: Dir, t: Option<Duration>) -> io::Result<()> {
        let ns = match t {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            Some(d) => d.as_nanos().clamp(1, u64::MAX as u128) as u64,
            None => 0,
        };
        match dir {
            Dir::Read => self.read_timeout.store(ns, Ordering::Relaxed),
            Dir::Write => self.write_timeout.store(ns, Ordering::Relaxed),
        }
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Dir) -> Option<Duration> {
        let ns = match dir {
            Dir::Read => self.read_timeout.load(Ordering::Relaxed),
            Dir::Write => self.write_timeout.load(Ordering::Relaxed),
        };
        (ns != 0).then(|| Duration::from_nanos(ns))
    }
}

impl<T: AsRawFd> Drop for Source<T> {
    fn drop(&mut self) {
        // Deregister before the fd is closed (see `Poller::deregister`).
        self.deregister();
        // SAFETY: dropped once, here.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller owns; results checked.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(crate::errno::last_os_error());
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags && libc::fcntl(fd, libc::F_SETFL, new) < 0 {
            return Err(crate::errno::last_os_error());
        }
    }
    Ok(())
}

/// `poll_fd` for a descriptor the poller does not know (not registered), inside `blocking`:
/// the P is handed off if the wait takes long. Out of line and cold: its closure would
/// otherwise widen the frame of every stream read (`read_stream`, `io_until`), and each
/// line of a parked G's stack that a round trip touches is a cache miss once there are
/// a thousand connections.
#[cold]
#[inline(never)]
fn poll_fd_blocking(fd: RawFd, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
    crate::blocking(|| poll_fd(fd, dir, deadline))
}

/// Blocks the calling thread in `poll(2)` until `fd` is ready for `dir` or the deadline
/// passes (`TimedOut`). Readiness may be spurious; the caller retries its call.
pub(crate) fn poll_fd(fd: RawFd, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
    let events = match dir {
        Dir::Read => libc::POLLIN,
        Dir::Write => libc::POLLOUT,
    };
    loop {
        let ms = match deadline {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out());
                }
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return Ok(());
        }
        if r < 0 {
            let e = crate::errno::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // r == 0: the timeout, rounded; loop to check the clock.
    }
}
