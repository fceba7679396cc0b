//! The deadlock report: Go's `fatal error: all goroutines are asleep - deadlock!`.
//!
//! When sysmon is about to sleep because every P is idle, it checks whether anything could
//! ever run again (and again while it sleeps, backing off from 200 ms to 5 s: one look can
//! be inconclusive for a moment, and a program that deadlocks later would never wake it). It reports (and exits with status 2, as Go does) only when the evidence is
//! conclusive, twice, 100 ms apart, with no green thread scheduled and no OS thread woken in
//! between:
//!
//! - every P idle, no M spinning, every run queue empty, no G inside `blocking`;
//! - no timer held (a pending `sleep`, `after`, deadline or tick could wake someone; a
//!   cancelled timer not yet swept counts too) and no G waiting on a socket;
//! - every OS thread of the process that is not the runtime's own is parked, with no
//!   deadline, in a gort primitive (a channel, a lock, a join...) and has not been notified.
//!   Such a thread is counted exactly: it marks itself before parking, and whoever wakes it
//!   (or it, if it wakes by itself) clears the mark once. The marks are per thread (one
//!   cache line each, no shared counter on the park path); the check sums them.
//!
//! A thread doing anything else (computing, sleeping in std, blocked in another library)
//! could still wake a green thread, so then nothing is reported, whatever the green threads
//! do: the report never fires for a correct program, and may stay silent for some stuck
//! ones (CAVEATS §10).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::Thread;
use std::time::Duration;

use crate::sched::Sched;

/// Every OS thread outside the runtime that has used a gort primitive (registered once, on
/// its first use; a thread that has exited leaves a dead `Weak`, swept as the list grows).
static PLAIN_THREADS: Mutex<Vec<Weak<PlainThread>>> = Mutex::new(Vec::new());
/// G's inside `gort::blocking`.
pub(crate) static IN_BLOCKING: AtomicUsize = AtomicUsize::new(0);
/// Runtime threads not counted in `Sched::nthreads` (the SIGQUIT dump thread).
pub(crate) static EXTRA_THREADS: AtomicUsize = AtomicUsize::new(0);

/// An OS thread outside the runtime, as an `Unparker` holds it.
pub(crate) struct PlainThread {
    thread: Thread,
    /// Parked with no deadline in a gort primitive and not yet notified. Set by the thread
    /// before it parks; cleared once, by a swap, by whoever gets there first (the waker, or
    /// the thread when it returns).
    parked: AtomicBool,
    /// Bumped by whoever clears `parked` (the check's proof that nothing moved).
    wakes: AtomicU64,
}

impl PlainThread {
    fn new() -> PlainThread {
        PlainThread {
            thread: std::thread::current(),
            parked: AtomicBool::new(false),
            wakes: AtomicU64::new(0),
        }
    }
}

thread_local! {
    static PLAIN: Arc<PlainThread> = {
        let me = Arc::new(PlainThread::new());
        let mut all = PLAIN_THREADS.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() == all.capacity() {
            all.retain(|w| w.strong_count() > 0);
        }
        all.push(Arc::downgrade(&me));
        me
    };
}

/// The calling OS thread's handle.
pub(crate) fn plain_current() -> Arc<PlainThread> {
    // While thread-locals are being destroyed: an unregistered handle (never marked).
    PLAIN
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::new(PlainThread::new()))
}

impl PlainThread {
    pub(crate) fn id(&self) -> std::thread::ThreadId {
        self.thread.id()
    }

    /// Clears the mark (once, whoever gets here first) and counts the change. The load
    /// first keeps the common case (not parked) free of a read-modify-write.
    fn unmark(&self) {
        // SeqCst, as every access to the marks: the check reads them in one total order
        // with the marking (see `looks_dead`).
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes the thread (or leaves it a token).
    pub(crate) fn unpark(&self) {
        self.unmark();
        self.thread.unpark();
    }
}

/// Parks the calling OS thread with no deadline, marked as parked in a gort primitive.
pub(crate) fn park_plain() {
    let marked = PLAIN.try_with(|me| {
        // Only this thread sets the mark, and it is clear while the thread runs. SeqCst:
        // see `unmark`.
        me.parked.store(true, Ordering::SeqCst);
        std::thread::park();
        me.unmark();
    });
    if marked.is_err() {
        std::thread::park();
    }
}

/// Plain threads parked (marked) now, and the sum of their wake-ups. SeqCst loads here and
/// in `marks`/`looks_dead`: the check's reads of the marks, counters and queues are ordered
/// in the single total order with the marking and unmarking (`unmark`, `park_plain`) and the
/// counters' SeqCst updates (`npidle`, `nmspinning`, `IN_BLOCKING`), so a look never
/// combines a value from before a change with one from after a later change.
fn plain_parked() -> (usize, u64) {
    let all = PLAIN_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    all.iter()
        .filter_map(Weak::upgrade)
        .fold((0, 0), |(n, w), t| {
            (
                n + usize::from(t.parked.load(Ordering::SeqCst)),
                w.wrapping_add(t.wakes.load(Ordering::SeqCst)),
            )
        })
}

/// The number of OS threads in the process (`Threads:` of `/proc/self/status`). The file is
/// opened once and kept (one fd for the life of the process, like the poller's): opening
/// and closing it on every look would hold a descriptor for a moment, and a program at its
/// `RLIMIT_NOFILE` would see an `open` or `accept` fail (or succeed) depending on when the
/// check ran. `prepare` opens it when sysmon starts (on the thread that spawns the first M),
/// so the descriptor is taken at a predictable moment, not while the program runs; each look
/// rewinds it and reads it whole (only sysmon looks, so the shared position is never raced).
fn os_threads() -> Option<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = status_file()?;
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn status_file() -> Option<&'static std::fs::File> {
    static STATUS: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    STATUS
        .get_or_init(|| std::fs::File::open("/proc/self/status").ok())
        .as_ref()
}

/// Opens what the check reads (called once, before sysmon starts).
pub(crate) fn prepare() {
    status_file();
}

/// What must stay the same between the two looks.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Marks {
    ticks: u64,
    plain: u64,
}

fn marks(s: &Sched) -> Marks {
    Marks {
        ticks: s
            .ps()
            .iter()
            .map(|p| p.tick.load(Ordering::SeqCst))
            .fold(0u64, u64::wrapping_add)
            .wrapping_add(s.ext_unparked.load(Ordering::SeqCst)),
        plain: plain_parked().1,
    }
}

/// One look: whether nothing could run again, as of now (see the module docs).
fn looks_dead(s: &Sched) -> Option<Marks> {
    let before = marks(s);
    // SeqCst: as in `plain_parked` (pairs with the updates in `blocking`).
    if !s.all_idle() || IN_BLOCKING.load(Ordering::SeqCst) != 0 {
        return None;
    }
    if s.timers.len() != 0 || crate::net::poller_if_init().is_some_and(|p| p.waiting() != 0) {
        return None;
    }
    // The main thread is never one of the runtime's, so with no plain thread parked some
    // plain thread runs: nothing to report, and no need to read `/proc`.
    let parked = plain_parked().0;
    if parked == 0 {
        return None;
    }
    // SeqCst: as in `plain_parked`.
    let runtime = s.runtime_threads() + EXTRA_THREADS.load(Ordering::SeqCst);
    let plain = os_threads()?.checked_sub(runtime)?;
    if plain != parked {
        return None;
    }
    (marks(s) == before && s.all_idle()).then_some(before)
}

/// Sysmon's check before it sleeps with every P idle: reports a deadlock and exits with
/// status 2 if nothing can ever run again.
pub(crate) fn check(s: &Sched) {
    let Some(first) = looks_dead(s) else {
        return;
    };
    std::thread::sleep(Duration::from_millis(100));
    if looks_dead(s) != Some(first) {
        return;
    }
    let d = crate::dump::dump();
    eprint!("gort: all green threads are asleep - deadlock!\n\n{d}");
    std::process::exit(2);
}
