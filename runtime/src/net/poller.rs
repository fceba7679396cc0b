//! The netpoller: one epoll instance for the runtime, and a poll descriptor per registered
//! file descriptor (Go's `netpoll` and `pollDesc`).
//!
//! # Registration
//!
//! Every socket gort makes (and every fd given to `PollFd`) is non-blocking and registered
//! once, edge-triggered, for read, write and hang-up. Edge-triggered means the kernel reports
//! a change of readiness, not a state: so a G always tries its system call first and waits
//! only after `EAGAIN`, and must not miss an edge that arrives between its `EAGAIN` and its
//! park.
//!
//! # The poll descriptor and why no wake-up is lost
//!
//! A descriptor has two directions (read, write), each a small spin-locked record: a
//! `closed` flag, the waiters (records on the waiting G's stacks), a `ready` token, and,
//! outside the lock, the count of readiness events delivered for that direction. A G reads
//! the count *before* a system call (`PollDesc::edges`); after `EAGAIN` it locks its
//! direction and parks only if the count is still what it read (`Since::Edges`), else it
//! retries the call. The poller, on an event, locks the direction, bumps the count, and
//! marks every queued waiter woken and wakes it (claiming a parked G outright, see
//! `DirState::wake_all`); with no waiter it also sets `ready`, the token for waits with no
//! system call before them (`Since::Token`: `PollFd::readable`, a connect in progress),
//! which the first such waiter consumes. Both sides run under the direction's lock, so the
//! event either comes before the G's look under the lock (the G sees the count moved and
//! retries) or after it (the G is queued and is woken): an edge that arrives between
//! `EAGAIN` and the park is never lost. And since the count is compared, not consumed,
//! *every* G that looked before an event sees it: several G's accepting on one listener,
//! or reading one stream, each retry (with a one-shot token only the first would, and the
//! others could park while a connection waited in the backlog). A woken G retries its
//! call; if another got the data first it sees `EAGAIN` and waits again (an extra system
//! call, never a hang).
//!
//! A waiter with a deadline parks with a timer; when it wakes past the deadline it takes
//! itself off the queue under the lock, unless the poller marked it woken first (then it
//! goes on as woken). A waiter record is freed only after its owner saw it off the queue:
//! either it reads the `woken` mark, which the poller stores (Release) as its last touch of
//! the record, or it took itself off under the lock. So the poller never touches a record
//! that is gone, and a woken G goes on without taking the lock again.
//!
//! # Descriptors are never freed
//!
//! An event names its descriptor by address plus a 16-bit sequence number in the epoll
//! data (Go's tagged pointer). Descriptors live in a pool and are reused, never freed: an
//! event already fetched for a socket that has since been closed can only find the
//! descriptor reused under another sequence number, and is ignored. Closing a socket marks
//! both directions closed and wakes their waiters with an error, removes the fd from epoll
//! (`EPOLL_CTL_DEL`, before the fd is closed, so that a duplicate of the fd elsewhere keeps
//! no registration alive), then bumps the sequence number.
//!
//! # Who polls
//!
//! See "The netpoller" in docs/ARCHITECTURE.md: an M looking for work polls without
//! blocking before it steals (and every 61st schedule) when any G waits on I/O; the timer
//! sleeper, the one idle M that sleeps until the next timer, sleeps in `epoll_wait` instead,
//! and is woken through an eventfd (Go's `netpollBreak`) when it is handed a P or a timer
//! earlier than its timeout is added.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::g::GRef;
use crate::park::{park_deadline, park_g, Unparker, Waker};
use crate::protocol::park_word;
use crate::protocol::waiter_mark::{self, QUEUED, WOKEN, WOKEN_CLOSED};
use crate::sched::current_g;
use crate::spin::{SpinGuard, SpinMutex};

/// Events fetched per `epoll_wait`. Small on purpose: the poll touches each readied G (its
/// state word, and the waiter record on its stack page), and a G that runs soon after finds
/// those lines and that page still cached; a batch of 128 runs its last G 128 G's (and 256
/// system calls) later, when they are gone. Echo server, one P, 10,000 connections,
/// alternating rounds: 128 events 136k – 157k round trips/s, 64 144k – 145k, 32 152k – 171k,
/// 8 150k – 157k; 100 and 1,000 connections did not move. (Go fetches 128, tokio 1,024.)
const EVENTS: usize = 32;
/// Fewer G's than this waiting on I/O: `Poller::prefetch` is skipped. Their stacks, G's and
/// records then stay cached between two turns, and the passes' locks only cost (100
/// connections: +0.6% round trips without them, in four rounds of four).
const PREFETCH_MIN_WAITING: usize = 256;
/// Poll descriptors allocated at once.
const DESC_CHUNK: usize = 64;

/// Which way a G waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// What a waiter compares against to decide whether to park.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Since {
    /// The direction's count of readiness events as the caller read it (`PollDesc::edges`)
    /// before the system call that said `EAGAIN` (or, for a stream read that waits first,
    /// before the short read that emptied the socket): any event since then means the
    /// socket may have changed, and the caller retries instead of parking. Nothing is
    /// consumed, so every caller that looked before an event sees it, however many.
    Edges(u32),
    /// The direction's `ready` token (an event that found no waiter), consumed by the first
    /// waiter that finds it: for a wait with no system call before it to compare against
    /// (`PollFd::readable`, a connect in progress).
    Token,
}

/// A waiting G, on its own stack; reached by the poller only under the direction's lock.
/// The records of one direction form a doubly linked list (no allocation per wait, and a
/// descriptor costs no heap memory beyond itself: it counts at 10,000 connections).
struct IoWaiter {
    waker: Waker,
    /// `QUEUED` until the poller (or `close`) takes the waiter off the queue and sets it to
    /// `WOKEN` (or `WOKEN_CLOSED`), its last touch of the record (`protocol::waiter_mark`,
    /// model-checked in tests/loom.rs): an owner that reads it set may leave (and its stack
    /// record be reused) without taking the lock.
    woken: AtomicU8,
    prev: *mut IoWaiter,
    next: *mut IoWaiter,
}

struct DirState {
    /// A readiness edge arrived while nobody waited (for `Since::Token` waits).
    ready: bool,
    /// The descriptor was closed: waiters get an error.
    closed: bool,
    /// The peer hung up or the socket has an error (`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR`): a
    /// state, not an edge — it raises no new event — so it is kept for good (see
    /// `Source::read_stream`).
    hup: bool,
    /// The first queued waiter, or null.
    head: *mut IoWaiter,
}

// SAFETY: the raw pointers are only dereferenced under the lock that guards them, while the
// record's owner is blocked (see the module docs).
unsafe impl Send for DirState {}

impl DirState {
    const fn new() -> DirState {
        DirState {
            ready: false,
            closed: false,
            hup: false,
            head: std::ptr::null_mut(),
        }
    }

    /// Queues `w` (at the front; every waiter is woken at once, so order does not matter).
    ///
    /// # Safety
    /// `w` is a live record, not queued, that stays alive until it is off the queue.
    unsafe fn push(&mut self, w: *mut IoWaiter) {
        // SAFETY: per the caller, and queued records are alive (see `wake_all`).
        unsafe {
            (*w).prev = std::ptr::null_mut();
            (*w).next = self.head;
            if !self.head.is_null() {
                (*self.head).prev = w;
            }
        }
        self.head = w;
    }

    /// Takes `w` off the queue.
    ///
    /// # Safety
    /// `w` is queued here.
    unsafe fn unlink(&mut self, w: *mut IoWaiter) {
        // SAFETY: queued records and their neighbours are alive.
        unsafe {
            if (*w).prev.is_null() {
                self.head = (*w).next;
            } else {
                (*(*w).prev).next = (*w).next;
            }
            if !(*w).next.is_null() {
                (*(*w).next).prev = (*w).prev;
            }
        }
    }

    /// Wakes every waiter (readiness or close) and marks each woken. A parked G is claimed
    /// (`park_word::claim`) and its reference pushed onto `queue`, for the caller to queue
    /// it: no counted handle is taken or dropped, and the G stays off its stack until then,
    /// so marking its record after the claim is safe. Any other waiter (a G still on its
    /// way to park, or one whose stack sysmon is shrinking) gets a counted handle in
    /// `rest`, taken before the mark, for the caller to `unpark`. Returns how many it took
    /// off the queue (for `Poller::waiting`).
    fn wake_all(&mut self, queue: &mut Vec<GRef>, rest: &mut Vec<Unparker>) -> usize {
        let how = if self.closed { WOKEN_CLOSED } else { WOKEN };
        let mut w = std::mem::replace(&mut self.head, std::ptr::null_mut());
        let mut n = 0;
        while !w.is_null() {
            // `next` and the waker are read before `woken` is set: after that the owner may
            // leave at once (if it is not parked), and the record is not touched again.
            // SAFETY: a queued waiter is alive (its owner leaves only after seeing `woken`
            // set, or after taking itself off the queue under this lock), and so is its G.
            unsafe {
                let next = (*w).next;
                match &(*w).waker {
                    Waker::G(g) if park_word::claim(&(**g).state) => {
                        // The reference the G kept when it parked is ours now.
                        queue.push(GRef::from_raw(g.cast_mut()));
                    }
                    waker => rest.push(waker.upgrade()),
                }
                // The last touch: the owner may reuse the record once it reads this.
                waiter_mark::mark(&(*w).woken, how);
                w = next;
            }
            n += 1;
        }
        n
    }
}

/// A registered file descriptor's readiness state: per direction a locked record and the
/// count of readiness events the poller has delivered for that direction (wrapping; bumped
/// under the direction's lock, read outside it: see `Since::Edges`).
///
/// One cache line each (`align(64)`; packed 56 bytes apart, as they were, three descriptors
/// in eight straddled two lines), and a read's round trip touches the sequence word and the read
/// direction (lock, event count, waiter queue) in the poller and again in the G. A
/// thousand connections make each extra line a miss per round trip (issue #10).
#[repr(C, align(64))]
pub(crate) struct PollDesc {
    /// Bumped when the descriptor is released; the low 16 bits tag epoll events.
    seq: AtomicU64,
    rd: SpinMutex<DirState>,
    wr: SpinMutex<DirState>,
    /// The read direction's event count.
    rd_edges: AtomicU32,
    /// The write direction's event count.
    wr_edges: AtomicU32,
}

// Exactly one 64-byte line: a server holds one per connection, allocated 64 at a time.
// Keep it from outgrowing its line by accident.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    std::mem::size_of::<PollDesc>() == 64,
    "the poll descriptor outgrew its cache line"
);

impl PollDesc {
    fn dir(&self, d: Dir) -> &SpinMutex<DirState> {
        match d {
            Dir::Read => &self.rd,
            Dir::Write => &self.wr,
        }
    }

    /// Direction `d`'s event count (see `edges`).
    fn edges_word(&self, d: Dir) -> &AtomicU32 {
        match d {
            Dir::Read => &self.rd_edges,
            Dir::Write => &self.wr_edges,
        }
    }

    /// The count of readiness events delivered for direction `d` so far, for a caller about
    /// to try a system call (`Since::Edges`).
    pub(crate) fn edges(&self, d: Dir) -> u32 {
        // Acquire: pairs with the poller's Release bump. If this reads an event's bump, the
        // change that event reports (data queued, space freed) happened before the bump
        // (the kernel queued it before waking the poller), so the caller's system call,
        // which comes after this load, sees it; and a bump this load misses makes the
        // caller's comparison under the lock fail, so it retries.
        self.edges_word(d).load(Ordering::Acquire)
    }

    /// The epoll data naming this descriptor now: its address and sequence number.
    fn token(&self) -> u64 {
        let addr = self as *const PollDesc as u64;
        debug_assert!(addr >> 48 == 0, "user-space addresses fit in 48 bits");
        addr | ((self.seq.load(Ordering::Relaxed) & 0xFFFF) << 48)
    }

    /// The descriptor an event's data (`token`) names; not the break eventfd's (data 0).
    fn from_token(data: u64) -> &'static PollDesc {
        debug_assert!(data != 0, "the break eventfd names no descriptor");
        // SAFETY: the low 48 bits are a descriptor's address (`token`), and descriptors are
        // never freed (module docs): it stays valid, whatever socket holds it now.
        unsafe { &*((data & ((1 << 48) - 1)) as *const PollDesc) }
    }

    /// Parks the calling G until `d` may be ready (`Ok`), the deadline passes
    /// (`TimedOut`) or the descriptor is closed (an error); returns `Ok` at once if an event
    /// came `since` the caller's look. Called after `EAGAIN`; the caller retries its call
    /// after `Ok`.
    ///
    /// # Panics
    /// If the caller is not a green thread (plain threads use `poll(2)`).
    pub(crate) fn wait(&self, d: Dir, deadline: Option<Instant>, since: Since) -> io::Result<()> {
        self.wait_inner(d, deadline, false, since)
    }

    /// `wait`, but returns at once if the peer has hung up (or the socket has an error):
    /// for a read that skips its system call after a short read, where the hang-up may have
    /// come with the data that read took, and raises no new edge.
    pub(crate) fn wait_unless_hup(
        &self,
        d: Dir,
        deadline: Option<Instant>,
        since: Since,
    ) -> io::Result<()> {
        self.wait_inner(d, deadline, true, since)
    }

    /// Whether a wait is over before it parks: closed, an event `since` the caller's look,
    /// or (for `wait_unless_hup`) a hang-up. Under the direction's lock (`st`).
    #[inline(always)]
    fn over(&self, d: Dir, st: &mut DirState, since: Since, hup: bool) -> Option<io::Result<()>> {
        if st.closed {
            return Some(Err(closed_error()));
        }
        match since {
            // Relaxed: the lock orders this load with the poller's bump.
            Since::Edges(seen) if self.edges_word(d).load(Ordering::Relaxed) != seen => {
                return Some(Ok(()));
            }
            Since::Token if st.ready => {
                st.ready = false;
                return Some(Ok(()));
            }
            _ => {}
        }
        (hup && st.hup).then_some(Ok(()))
    }

    /// A wait past its deadline before it could park (a timeout of a few nanoseconds, say):
    /// give way once and look again (`park::park_until`), as every timed wait does; a G
    /// retrying such reads would otherwise hold its P, and the G that would send it data,
    /// queued behind it, would never run. Out of line: off the round trip's frames.
    #[cold]
    #[inline(never)]
    fn timed_out_unparked(&self, d: Dir, since: Since, hup: bool) -> io::Result<()> {
        crate::park::yield_now();
        let mut st = self.dir(d).lock();
        self.over(d, &mut st, since, hup)
            .unwrap_or_else(|| Err(timed_out()))
    }

    fn wait_inner(
        &self,
        d: Dir,
        deadline: Option<Instant>,
        hup: bool,
        since: Since,
    ) -> io::Result<()> {
        let g = current_g();
        assert!(!g.is_null(), "PollDesc::wait outside a green thread");
        let mut w = IoWaiter {
            waker: Waker::G(g),
            woken: AtomicU8::new(QUEUED),
            prev: std::ptr::null_mut(),
            next: std::ptr::null_mut(),
        };
        // From here on the record is reached only through this pointer (by us and, under
        // the lock, by the poller).
        let me: *mut IoWaiter = &mut w;
        let dir = self.dir(d);
        {
            let mut st = dir.lock();
            if let Some(r) = self.over(d, &mut st, since, hup) {
                return r;
            }
            if deadline.is_some_and(|t| Instant::now() >= t) {
                drop(st);
                return self.timed_out_unparked(d, since, hup);
            }
            // SAFETY: our record, alive until we see it off the queue (below).
            unsafe { st.push(me) };
            // Counted while queued: whoever takes the record off the queue uncounts it
            // (`wake_all`'s callers, or the timeout below). Inside the lock, so the count
            // is raised before any waker can see the record and lower it.
            poller().waiting.fetch_add(1, Ordering::Relaxed);
        }
        crate::dump::set_wait(crate::dump::Wait::Io);
        // SAFETY: our own record, alive on this stack until we return; the poller writes
        // this field only through the atomic, and the others never through this reference.
        let woken = unsafe { &(*me).woken };
        // What the mark says: taken off the queue (the call's result), or still queued.
        let taken = || match waiter_mark::read(woken) {
            WOKEN => Some(Ok(())),
            WOKEN_CLOSED => Some(Err(closed_error())),
            _ => None,
        };
        loop {
            match deadline {
                Some(t) => park_deadline(t),
                // SAFETY: `g` is the G running on this thread (checked non-null above).
                None => unsafe { park_g(g) },
            }
            // The usual case, with no lock taken.
            if let Some(r) = taken() {
                return r;
            }
            if deadline.is_some_and(|t| Instant::now() >= t) {
                let mut st = dir.lock();
                // Again under the lock: the poller may have taken us since.
                if let Some(r) = taken() {
                    return r;
                }
                // SAFETY: not woken, so still queued here.
                unsafe { st.unlink(me) };
                drop(st);
                poller().waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(timed_out());
            }
            // Not woken and not past the deadline: a stale token; park again.
        }
    }

    /// Marks the descriptor closed and wakes its waiters with an error. Further waits fail.
    pub(crate) fn close(&self) {
        let (mut queue, mut rest) = (Vec::new(), Vec::new());
        let mut n = 0;
        for d in [Dir::Read, Dir::Write] {
            let mut st = self.dir(d).lock();
            st.closed = true;
            n += st.wake_all(&mut queue, &mut rest);
        }
        if n > 0 {
            poller().waiting.fetch_sub(n, Ordering::Relaxed);
        }
        if !queue.is_empty() {
            crate::sched::sched().inject(queue);
        }
        for u in rest {
            u.unpark(false);
        }
    }
}

pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "gort: I/O deadline passed")
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "gort: the socket was closed while waiting on it",
    )
}

/// The runtime's epoll instance.
pub(crate) struct Poller {
    epfd: OwnedFd,
    /// Written to wake an M blocked in `epoll_wait`; registered with data 0.
    event: OwnedFd,
    /// G's parked waiting on a descriptor.
    waiting: AtomicUsize,
    /// An M is (about to be) blocked in `epoll_wait`.
    sleeping: AtomicBool,
    /// The eventfd was written and not yet drained (Go's `netpollWakeSig`).
    break_pending: AtomicBool,
    /// The last poll readied at least one G (a hint for the poll spin; Relaxed).
    busy: AtomicBool,
    /// Released descriptors, for reuse.
    free: Mutex<Vec<&'static PollDesc>>,
}

static POLLER: OnceLock<Poller> = OnceLock::new();

/// The poller, created on first use (the first socket).
pub(crate) fn poller() -> &'static Poller {
    if let Some(p) = POLLER.get() {
        return p;
    }
    let mut fresh = false;
    let p = POLLER.get_or_init(|| {
        fresh = true;
        Poller::new().unwrap_or_else(|e| {
            // Without epoll nothing in gort::net can work; every socket call would fail.
            // This is resource exhaustion at the first socket: say so plainly.
            panic!("gort: cannot create the network poller (epoll, eventfd): {e}")
        })
    });
    if fresh {
        // An idle M may be asleep on the timers the old way (std park): make it come back
        // and sleep in the poller from now on.
        crate::sched::sched().timers.wake_sleeper();
    }
    p
}

/// The poller, if any socket was ever made.
pub(crate) fn poller_if_init() -> Option<&'static Poller> {
    POLLER.get()
}

impl Poller {
    fn new() -> io::Result<Poller> {
        // SAFETY: plain system calls; results checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(crate::errno::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        // SAFETY: as above.
        let ev = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if ev < 0 {
            return Err(crate::errno::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let event = unsafe { OwnedFd::from_raw_fd(ev) };
        let mut e = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: both fds are valid; `e` is a valid event.
        if unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, ev, &mut e) } < 0 {
            return Err(crate::errno::last_os_error());
        }
        Ok(Poller {
            epfd,
            event,
            waiting: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            break_pending: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            free: Mutex::new(Vec::new()),
        })
    }

    /// Whether an M is (about to be) blocked in `epoll_wait`.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed)
    }

    /// Whether the last poll readied a G.
    pub(crate) fn recently_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// G's parked on a descriptor.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Registers `fd` (already non-blocking), edge-triggered for read, write and hang-up.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<&'static PollDesc> {
        let d = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.is_empty() {
                // Descriptors are never freed (module docs): allocate them by the chunk,
                // one allocation (and one allocator header) per DESC_CHUNK sockets.
                let chunk: &'static [PollDesc] = Box::leak(
                    (0..DESC_CHUNK)
                        .map(|_| PollDesc {
                            seq: AtomicU64::new(0),
                            rd: SpinMutex::new(DirState::new()),
                            wr: SpinMutex::new(DirState::new()),
                            rd_edges: AtomicU32::new(0),
                            wr_edges: AtomicU32::new(0),
                        })
                        .collect(),
                );
                free.extend(chunk.iter().rev());
            }
            free.pop().expect("refilled above")
        };
        for dir in [Dir::Read, Dir::Write] {
            let mut st = d.dir(dir).lock();
            st.ready = false;
            st.closed = false;
            st.hup = false;
            debug_assert!(st.head.is_null());
        }
        let mut e = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: d.token(),
        };
        // SAFETY: `fd` is a valid fd the caller owns; `e` is a valid event.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut e) } < 0 {
            let err = crate::errno::last_os_error();
            self.release(d);
            return Err(err);
        }
        Ok(d)
    }

    /// Closes `d` (waking its waiters with an error), removes `fd` from epoll, and puts the
    /// descriptor back in the pool under a new sequence number. The caller closes `fd`
    /// afterwards.
    pub(crate) fn deregister(&self, d: &'static PollDesc, fd: RawFd) {
        d.close();
        let mut e = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `fd` is still open (the caller closes it after this). An error (the fd
        // was never added, or already gone) changes nothing we rely on.
        unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut e) };
        self.release(d);
    }

    fn release(&self, d: &'static PollDesc) {
        d.seq.fetch_add(1, Ordering::Relaxed);
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(d);
    }

    /// Polls once: blocks up to `timeout` (`None`: until an event or a break; zero: not at
    /// all), and returns the G's (and threads) made ready, woken into `out` as a batch
    /// (G's as references to queue, threads unparked at once). Returns the number of events.
    pub(crate) fn poll(&self, timeout: Option<Duration>, out: &mut Vec<GRef>) -> usize {
        // SAFETY: an all-zero epoll_event is valid.
        let mut evs: [libc::epoll_event; EVENTS] = unsafe { std::mem::zeroed() };
        let n = self.epoll_wait(&mut evs, timeout);
        if n <= 0 {
            self.busy.store(false, Ordering::Relaxed);
            return 0;
        }
        if self.waiting() >= PREFETCH_MIN_WAITING {
            Self::prefetch(&evs[..n as usize]);
        }
        // One allocation for the batch, not one per doubling.
        out.reserve(n as usize);
        // Waiters that were not parked yet (rare: allocates only when used).
        let mut rest = Vec::new();
        let mut taken = 0;
        for e in &evs[..n as usize] {
            let data = e.u64;
            if data == 0 {
                // The break eventfd (level-triggered). Only a blocking poll — the sleeper it
                // is meant for — drains it: a non-blocking poll on another M that drained it
                // would leave the sleeper asleep with a P handed to it (a lost wake-up, found
                // by a test that hung once in a few dozen runs; Go's netpoll has the same
                // rule). Left readable, it wakes the sleeper's next `epoll_wait`.
                if timeout != Some(Duration::ZERO) {
                    self.drain_break();
                }
                continue;
            }
            let d = PollDesc::from_token(data);
            if d.seq.load(Ordering::Relaxed) & 0xFFFF != data >> 48 {
                continue; // a socket closed since; the descriptor has moved on
            }
            let ev = e.events as i32;
            let hup = ev & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0;
            if ev & libc::EPOLLIN != 0 || hup {
                taken += ready(d, Dir::Read, hup, out, &mut rest);
            }
            if ev & libc::EPOLLOUT != 0 || ev & (libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                taken += ready(d, Dir::Write, hup, out, &mut rest);
            }
        }
        if taken > 0 {
            // One update for the batch (each waiter raised the count when it queued).
            self.waiting.fetch_sub(taken, Ordering::Relaxed);
        }
        // Every waiter taken off a queue went to `out` or `rest`.
        self.busy.store(taken > 0, Ordering::Relaxed);
        for u in rest {
            u.unpark_into(out);
        }
        n as usize
    }

    /// Starts the memory loads that waking and running the G's of a batch will need, for all
    /// of them at once, before the first is needed: each waiting G has a stack page of its own
    /// that nothing else touches, so with many connections its waiter record (on that page),
    /// its G struct and the top of its saved stack are cache and TLB misses, which, taken one
    /// at a time (the record in `wake_all`, the rest when the G resumes), stall the one core
    /// for each. Three passes over the batch, each a prefetch of addresses the previous pass
    /// brought in: the waiter records (found under each descriptor's lock), their G's, and
    /// the lines around each G's saved stack pointer (`park_sp`) and the shrink band its next
    /// park reads. Echo at 1,000 and 10,000 connections: 5 - 25% more round trips (level
    /// with tokio's under a load generator that never sleeps; BENCHMARKS.md). Only hints:
    /// nothing read here decides anything.
    fn prefetch(evs: &[libc::epoll_event]) {
        // The head waiter of each event's read direction, under its lock (records are
        // alive while queued; a write-side wait is rare and not worth it).
        fn head(e: &libc::epoll_event) -> Option<(SpinGuard<'static, DirState>, *mut IoWaiter)> {
            let data = e.u64;
            if data == 0 || e.events as i32 & libc::EPOLLIN == 0 {
                return None;
            }
            let st = PollDesc::from_token(data).rd.lock();
            let h = st.head;
            (!h.is_null()).then_some((st, h))
        }
        // The G of a queued record (the caller holds the record's lock).
        fn g_of(h: *mut IoWaiter) -> Option<*const crate::g::G> {
            // SAFETY: a queued record is alive while its direction's lock is held.
            match unsafe { &(*h).waker } {
                Waker::G(g) => Some(*g),
                Waker::Thread(_) => None,
            }
        }
        for e in evs {
            if let Some((_lock, h)) = head(e) {
                prefetch(h as *const u8);
            }
        }
        for e in evs {
            // (`_lock` holds the direction's lock to the end of the block.)
            if let Some((_lock, h)) = head(e) {
                if let Some(g) = g_of(h) {
                    // The G struct's lines (state word, coroutine, `park_sp`).
                    let g = g as *const u8;
                    for off in [0, 64, 128, 192, std::mem::size_of::<crate::g::G>() - 1] {
                        prefetch(g.wrapping_add(off));
                    }
                }
            }
        }
        for e in evs {
            let Some((_lock, h)) = head(e) else { continue };
            if let Some(g) = g_of(h) {
                // SAFETY: the G of a queued record is parked or about to be: alive while
                // its record is queued, and we hold the record's lock.
                let sp = unsafe { (*g).park_sp.load(Ordering::Relaxed) } & !63;
                if sp != 0 {
                    // The switch's saved registers lie just below `park_sp`, the frames
                    // that return first just above.
                    for off in [-64isize, 0, 64, 128] {
                        prefetch((sp as *const u8).wrapping_offset(off));
                    }
                    // The bottom line of the page it parked in: the stack's shrink band
                    // (`shrink.rs`), which its next park reads, when it parked in its top
                    // page (as nearly every G does); any other page's first line otherwise.
                    prefetch((sp & !(crate::stack::page_size() - 1)) as *const u8);
                }
            }
        }
    }

    /// `epoll_wait` with a timeout to the nanosecond where the kernel has `epoll_pwait2`
    /// (Linux 5.11+): the timer sleeper's timeout is the next timer's deadline, and
    /// `epoll_wait`'s milliseconds would wake a 1.5 ms sleep half a millisecond late. Older
    /// kernels answer `ENOSYS`, and the process falls back, once, to milliseconds (rounded
    /// up, so that a timer due in 0.3 ms is not a busy loop of 0 ms waits). A raw system
    /// call, so that no glibc version is required.
    fn epoll_wait(&self, evs: &mut [libc::epoll_event; EVENTS], timeout: Option<Duration>) -> i32 {
        static NO_PWAIT2: AtomicBool = AtomicBool::new(false);
        let fd = self.epfd.as_raw_fd();
        if let Some(d) = timeout.filter(|d| !d.is_zero()) {
            // Relaxed: a cached answer of the kernel's; any value is correct to act on.
            if !NO_PWAIT2.load(Ordering::Relaxed) {
                let ts = libc::timespec {
                    tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                };
                // SAFETY: `evs` has room for EVENTS events; `ts` is a valid timespec; no
                // signal mask (null).
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        fd,
                        evs.as_mut_ptr(),
                        EVENTS as libc::c_int,
                        &ts as *const libc::timespec,
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    )
                } as i32;
                if n >= 0 || crate::errno::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
                    return n;
                }
                NO_PWAIT2.store(true, Ordering::Relaxed);
            }
        }
        let ms = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: `evs` has room for EVENTS events.
        unsafe { libc::epoll_wait(fd, evs.as_mut_ptr(), EVENTS as i32, ms) }
    }

    /// Blocks in `epoll_wait` as the idle M sleeping on the timers, unless `skip` says
    /// (after this M announced itself) that it has been handed work meanwhile.
    pub(crate) fn sleep(
        &self,
        timeout: impl FnOnce() -> Option<Duration>,
        skip: impl FnOnce() -> bool,
        out: &mut Vec<GRef>,
    ) {
        self.sleeping.store(true, Ordering::Relaxed);
        // SeqCst fence: the sleeper's half of a store-buffer pair with `wake` callers
        // (`MNote::wake`, `Timers::add`): they publish the hand-off or the earlier timer,
        // fence, then read `sleeping`; we set `sleeping`, fence, then read the hand-off and
        // the timers. One of the two sees the other.
        fence(Ordering::SeqCst);
        if !skip() {
            let t = timeout();
            if t != Some(Duration::ZERO) {
                self.poll(t, out);
            }
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Wakes the M blocked in `epoll_wait`, if one is (Go's `netpollBreak`). The caller has
    /// published what it wants seen and issued a SeqCst fence (see `sleep`).
    pub(crate) fn wake(&self) {
        if !self.sleeping.load(Ordering::Relaxed) {
            return;
        }
        // Relaxed: one write is enough until the sleeper drains it; the eventfd itself
        // orders the rest.
        if self.break_pending.swap(true, Ordering::Relaxed) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd. EAGAIN (counter full)
        // means it is readable anyway.
        unsafe {
            libc::write(
                self.event.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn drain_break(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe {
            libc::read(
                self.event.as_raw_fd(),
                (&mut buf as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        self.break_pending.store(false, Ordering::Relaxed);
    }
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no fault, no effect on
/// correctness, any address allowed).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no architectural state.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above (`prfm` is a hint).
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{}]", in(reg) p, options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}

/// An event for `d`'s direction `dir`: wake its waiters, or leave a token; note a hang-up.
/// Returns how many waiters it took off the queue.
fn ready(
    d: &PollDesc,
    dir: Dir,
    hup: bool,
    queue: &mut Vec<GRef>,
    rest: &mut Vec<Unparker>,
) -> usize {
    let mut st = d.dir(dir).lock();
    st.hup |= hup;
    // Release: pairs with the Acquire in `PollDesc::edges` (see there). Under the lock, so
    // a waiter's comparison under it is ordered with this bump.
    let edges = d.edges_word(dir);
    edges.store(
        edges.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Release,
    );
    if st.head.is_null() {
        st.ready = true;
        0
    } else {
        st.wake_all(queue, rest)
    }
}

/// Wakes the M sleeping in the poller if there is one (after the caller's SeqCst fence).
pub(crate) fn wake_sleeper() {
    if let Some(p) = poller_if_init() {
        p.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A readiness event that arrives while nobody waits is seen by *every* G that read the
    /// event count before it, however many: two G's that both got `EAGAIN` before the event
    /// and reach the lock after it both retry. (With a one-shot token, the second would
    /// park while the data the event announced is still there; several G's accepting on one
    /// listener could leave a connection in the backlog that way until the next one came.)
    /// The deadline only turns such a hang into a failure.
    #[test]
    fn every_waiter_that_looked_before_an_event_sees_it() {
        // The runtime running, so that an idle M polls.
        crate::spawn(|| ()).join().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let fd = a.as_raw_fd();
        let d = poller().register(fd).unwrap();
        for round in 0..20 {
            let seen = d.edges(Dir::Read);
            b.write_all(&[round]).unwrap();
            while d.edges(Dir::Read) == seen {
                std::thread::sleep(Duration::from_millis(1));
            }
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    crate::spawn(move || {
                        let deadline = Instant::now() + Duration::from_secs(20);
                        d.wait(Dir::Read, Some(deadline), Since::Edges(seen))
                    })
                })
                .collect();
            for w in waiters {
                w.join().unwrap().unwrap();
            }
            // Drain, so that the next round's byte raises a new edge.
            let mut buf = [0u8; 8];
            assert_eq!(std::io::Read::read(&mut &a, &mut buf).unwrap(), 1);
        }
        // The token (a wait with no look to compare) still goes to one waiter only: the
        // next one parks until a new event.
        let seen = d.edges(Dir::Read);
        b.write_all(&[1]).unwrap();
        while d.edges(Dir::Read) == seen {
            std::thread::sleep(Duration::from_millis(1));
        }
        crate::spawn(move || d.wait(Dir::Read, None, Since::Token))
            .join()
            .unwrap()
            .unwrap();
        let second = crate::spawn(move || {
            let deadline = Instant::now() + Duration::from_millis(50);
            d.wait(Dir::Read, Some(deadline), Since::Token)
        });
        assert_eq!(
            second.join().unwrap().unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        poller().deregister(d, fd);
    }
}
