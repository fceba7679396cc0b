//! The scheduler: P's, M's, the run queues, `schedule`/`findRunnable`, and the spinning-M
//! protocol that keeps idle M's asleep without ever losing a wake-up.
//!
//! # The worker-parking problem
//!
//! (After Go's proc.go.) We want to keep just enough M's running to use the P's, and to
//! park the rest, so that a program with little parallelism burns no CPU. Two goals pull
//! apart: waking an M for every readied G wastes futex calls when other M's are about to
//! find the G anyway; waking too few leaves work stranded in a queue while M's sleep.
//!
//! The protocol. An M whose local queue is empty becomes *spinning* (counted in
//! `nmspinning`) while it looks for work in the global queue and the other P's queues; at
//! most half of the busy P's have a spinning M. Whoever readies a G (the *submitter*)
//! publishes it in a queue, then issues a SeqCst fence, then wakes an idle M (handing it an
//! idle P) **only if there is an idle P and no M is spinning** (`wakep`): a spinning M will
//! find the G. When a spinning M finds work it stops spinning, and if it was the last one it
//! calls `wakep` itself, because there may be more work than it can run.
//!
//! An M that finds nothing gives its P back to the idle list (`npidle += 1`, SeqCst),
//! stops spinning (`nmspinning -= 1`, SeqCst), issues a SeqCst fence and then **looks at
//! every queue once more** before it sleeps. Proof sketch that no G is stranded: let the
//! submitter's queue push be W, its fence F1 and its reads of `npidle`/`nmspinning` R; let
//! the idler's counter updates be U, its fence F2 and its queue reads Q. The two fences are
//! ordered in SeqCst order. If F1 comes first, Q sees W (the fence pair orders W before Q)
//! and the idler keeps the P and runs the G. If F2 comes first, R sees U: the submitter
//! sees an idle P and (if no one else spins) wakes an M. Either way someone runs the G.
//! This is the Dekker/store-buffer pattern; Acquire/Release alone would allow both sides
//! to read the old values, which is why these two places use SeqCst fences.
//!
//! # Where a G can be
//!
//! A runnable G is in exactly one place: a P's `runnext`, a P's local queue, the global
//! queue, or on an M (being resumed). A parked G is in no queue: the only references to it
//! are the waiters' `Unparker`s. The `GRef` in a queue *is* the right to run it.

use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::ptr;
use std::ptr::NonNull;
use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use corosensei::CoroutineResult;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;

use crate::config::{Config, MAX_PROCS};
pub(crate) use crate::g::GRef;
use crate::g::{Coro, Suspend, DEAD, G};
use crate::signal;
use crate::stack::{self, GStack, StackClass};
use crate::timer::Timers;

/// A dead G with no references, on a free list.
struct FreeG(NonNull<G>);

// SAFETY: a free G is plain memory owned by whichever list holds it.
unsafe impl Send for FreeG {}

/// Local run queue capacity (Go's 256); beyond it half the queue spills to the global one.
const RUNQ_CAP: usize = 256;
/// G's a P takes from `runnext` in a row before its queue's head gets a turn.
const RUNNEXT_STREAK: u32 = 64;
/// The oldest spawned G gets a turn every this many schedules (rarely: each such turn
/// breaks the depth-first order that keeps a tree of G's small).
const SPAWN_OLDEST_TICK: u32 = 257;
/// A global-queue check every this many schedules, for fairness (Go's 61).
const GLOBAL_TICK: u32 = 61;
/// Stealing rounds over all P's before an M gives up.
const STEAL_ROUNDS: usize = 4;
/// Most G's taken from a victim (half of a full queue).
const STEAL_MAX: usize = RUNQ_CAP / 2;
/// Dead G structs a P keeps for reuse.
const GFREE_CAP: usize = 64;
/// Dead G structs kept process-wide beyond the P's lists: a burst of this many G's is
/// followed by another without touching the allocator (Go keeps every G it ever made).
const GFREE_GLOBAL_CAP: usize = 1 << 20;
/// Dead G structs the global list keeps when the runtime goes idle; the rest are freed by
/// the idle M that gives memory back (see "Giving memory back" on `M::release_global_memory`).
const GFREE_KEEP_IDLE: usize = 16 * 1024;
/// G structs freed by threads outside the runtime (a main thread joining a burst) wake an
/// idle M to free them only once this many beyond [`GFREE_KEEP_IDLE`] have piled up, so that
/// a main thread spawning and joining in a loop does not wake an M every few joins.
const GFREE_EXT_SLACK: usize = 16 * 1024;
/// Stacks a P keeps; beyond it half move to the global lists.
const STACK_CACHE_CAP: usize = 32;
/// G ids a P reserves at once (Go's goidcache).
const GOID_BATCH: u64 = 16;
/// An idle M gives memory back in steps this small (stacks scrubbed, G structs freed), so
/// that it notices a P handed to it, or a due timer, soon.
const SCRUB_STEP: usize = 4;
const TRIM_STEP: usize = 512;
/// How long the runtime must stay idle before an idle M gives a burst's memory back: bursts
/// closer together than this reuse each other's G structs and warm stacks.
const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// How long an M with nothing to run keeps polling the network before it gives its P back,
/// when G's wait on sockets.
const NETPOLL_SPIN: std::time::Duration = std::time::Duration::from_micros(20);
/// How long the runtime must have been all idle (by the coarse clock) before the M that
/// ends the idle period wakes a sleeping sysmon (`Sched::end_all_idle`).
const SYSMON_REWAKE_MS: u32 = 10;
/// A P index meaning "none".
pub(crate) const NO_P: usize = usize::MAX;

/// A logical processor: the right to run G's, with the queues and caches that go with it.
pub(crate) struct P {
    /// The local FIFO of readied G's (woken, yielded, taken from the global queue). Only
    /// the M holding this P pushes and pops it.
    runq: UnsafeCell<Worker<GRef>>,
    /// Any M may steal from `runq` through this.
    stealer: Stealer<GRef>,
    /// The local stack of spawned G's (newest first, for locality: a parent's children run
    /// before older work, depth first). Owner only; thieves take its oldest.
    spawnq: UnsafeCell<Worker<GRef>>,
    /// Any M may steal from `spawnq` (its oldest end) through this.
    spawn_stealer: Stealer<GRef>,
    /// The G readied last by the running G, run next (a `GRef` from `into_raw`, or
    /// null). The owner swaps it in; stealers may swap it out.
    runnext: AtomicPtr<G>,
    /// Caches only the holder of the P touches.
    local: UnsafeCell<PLocal>,
    /// G's spawned on this P / finished on this P. Written only by the holder of the P
    /// (load + store, no read-modify-write); read by anyone.
    spawned: AtomicU64,
    finished: AtomicU64,
    /// G's that parked on this P / that the holder of this P unparked (owner-only, as
    /// above; for `stats`).
    pub(crate) parked: AtomicU64,
    pub(crate) unparked: AtomicU64,
    /// Stacks in this P's cache (owner-only; for `stats`).
    stacks_cached: AtomicUsize,
    /// `P_IDLE`, `P_RUNNING` or `P_SYSCALL`: see "Hand-off" in the module docs.
    pub(crate) status: AtomicU8,
    /// Bumped by every `blocking` call on this P (owner-only): sysmon hands a P off only
    /// after it saw the same call on two of its rounds.
    pub(crate) syscalltick: AtomicU64,
    /// A mirror of the P's schedule tick, and the id of the G running on it (0: none),
    /// stored by the holder at each resume: sysmon's view for the hog report.
    pub(crate) tick: AtomicU64,
    pub(crate) running_g: AtomicU64,
}

// A P's status: its values and the blocking-call hand-off are in `protocol::p_status`.
pub(crate) use crate::protocol::p_status::{P_IDLE, P_RUNNING, P_SYSCALL};

struct PLocal {
    schedtick: u32,
    /// G's taken from `runnext` in a row (see `runqget`).
    runnext_streak: u32,
    gfree: Vec<FreeG>,
    stacks: Vec<GStack>,
    goid_next: u64,
    goid_end: u64,
}

// SAFETY: `runq` and `local` are touched only by the M that holds the P (taken from the idle
// list under the idle lock, or handed to it by `startm`), and by G's running on that M,
// which are on that M's thread. A P changes hands only through the idle lock or the
// MNote's `nextp` (Release/Acquire), which order the previous holder's accesses before the
// next holder's. Everything else in P is atomic or immutable.
unsafe impl Sync for P {}
// SAFETY: as above; a P is never moved after the scheduler is built.
unsafe impl Send for P {}

impl P {
    /// # Safety
    /// The caller holds this P (see the `Sync` impl).
    #[allow(clippy::mut_from_ref)]
    unsafe fn local(&self) -> &mut PLocal {
        // SAFETY: the caller holds the P, so no one else touches `local`.
        unsafe { &mut *self.local.get() }
    }

    /// # Safety
    /// The caller holds this P.
    unsafe fn runq(&self) -> &Worker<GRef> {
        // SAFETY: the caller holds the P.
        unsafe { &*self.runq.get() }
    }

    /// # Safety
    /// The caller holds this P.
    unsafe fn spawnq(&self) -> &Worker<GRef> {
        // SAFETY: the caller holds the P.
        unsafe { &*self.spawnq.get() }
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.stealer.is_empty()
            || !self.spawn_stealer.is_empty()
            || !self.runnext.load(Ordering::Relaxed).is_null()
    }
}

/// A parked M's mailbox: `startm` puts a P in `nextp` and unparks the thread.
struct MNote {
    /// The P handed over, or NO_P. Written (Release) by `startm` after `spinning`; read
    /// (Acquire) by the parked M, which then owns the P.
    nextp: AtomicUsize,
    /// Whether the M is counted in `nmspinning` on its hand-over.
    spinning: AtomicBool,
    /// Set (before an unpark) by a thread outside the runtime that left memory to give back
    /// while every P was idle: the M wakes up, gives it back, and sleeps again.
    release: AtomicBool,
    /// The M is (about to be) asleep in the poller rather than in `park`: waking it takes
    /// an eventfd write (see `wake`).
    polling: AtomicBool,
    thread: Thread,
}

impl MNote {
    /// Wakes the M, whether it sleeps in `park` or in the poller. The caller has published
    /// what the M should see (its `nextp`, its `release` flag).
    fn wake(&self) {
        self.thread.unpark();
        // SeqCst fence: pairs with the one in `Poller::sleep`, which the M issues after
        // setting `polling` and before it reads `nextp` (store-buffer pattern): either it
        // sees what we published, or we see `polling` and break its `epoll_wait`.
        fence(Ordering::SeqCst);
        if self.polling.load(Ordering::Relaxed) {
            crate::net::wake_sleeper();
        }
    }
}

struct Idle {
    /// Idle P's, most recently idled last.
    pidle: Vec<usize>,
    /// Parked M's.
    midle: Vec<Arc<MNote>>,
}

/// The scheduler (Go's `schedt` plus the P array).
pub(crate) struct Sched {
    pub(crate) procs: usize,
    ps: Box<[P]>,
    /// The global run queue.
    injector: Injector<GRef>,
    /// G's woken by a timer that an M without a P fired (the idle M that sleeps on the
    /// timers): the P-less version of `runnext`, looked at before the global queue (and
    /// every 61st schedule, with it). Without it such a G waited behind the
    /// whole global queue (a sleep woke up to 60 ms late behind a burst of 10,000 spawns).
    urgent: Injector<GRef>,
    /// G's in `urgent` (a hint: incremented before the push, decremented after a take). On
    /// a line of its own: it is read on every look at the global queues.
    nurgent: CachePadded<AtomicUsize>,
    /// Idle P's and parked M's, under one lock.
    idle: Mutex<Idle>,
    /// `idle.pidle.len()`, readable without the lock. Updated under the lock, SeqCst: it is
    /// one side of the submitter/idler protocol (module docs).
    pub(crate) npidle: AtomicUsize,
    /// M's looking for work. SeqCst for the same reason.
    pub(crate) nmspinning: AtomicUsize,
    /// M's started so far (names them).
    mcount: AtomicUsize,
    /// OS threads the runtime runs (M's and sysmon), at most `max_threads`.
    pub(crate) nthreads: AtomicUsize,
    pub(crate) max_threads: usize,
    /// Starts sysmon with the first M.
    sysmon_once: Once,
    /// Sysmon's thread, once started.
    pub(crate) sysmon_thread: OnceLock<Thread>,
    /// Set by sysmon before a sleep of a millisecond or more (or an indefinite one); a G
    /// entering `blocking` that sees it wakes sysmon (see `sysmon.rs`).
    pub(crate) sysmon_sleeping: AtomicBool,
    /// Set by sysmon while it sleeps with no deadline at all (every P idle, no shrink work
    /// due); the stack shrinker's queue wakes it only then (see `shrink::nominate`).
    pub(crate) sysmon_indefinite: AtomicBool,
    /// Set by `end_all_idle` when it wakes sysmon only to keep the coarse clock and watch
    /// the P's: sysmon then resumes at its slowest pace, not its closest look (Relaxed: a
    /// hint about the wake just made).
    pub(crate) sysmon_calm: AtomicBool,
    /// `GORT_DEBUG` settings.
    pub(crate) schedtrace: Option<std::time::Duration>,
    pub(crate) hogs: Option<std::time::Duration>,
    /// When the runtime started (schedtrace's clock).
    pub(crate) started: std::time::Instant,
    /// The coarse clock: milliseconds since `started`, refreshed by sysmon on every round
    /// (at most `MAX_DELAY` apart while any P is busy) and by the M that ends a time when
    /// every P was idle (sysmon may be asleep then). Parks stamp their start with it: one
    /// relaxed load, where reading the clock would cost 20 ns per park (the dump's wait
    /// times are good to about 10 ms).
    coarse: CachePadded<AtomicU32>,
    /// G's unparked by threads holding no P (for `stats`).
    pub(crate) ext_unparked: AtomicU64,
    /// The default stack class.
    pub(crate) stacks: &'static StackClass,
    /// Every timer of the runtime (see `timer.rs`).
    pub(crate) timers: Timers,
    /// G's spawned from outside the runtime (no P).
    ext_spawned: AtomicU64,
    /// Next G id.
    next_goid: AtomicU64,
    /// Strides coprime with `procs`, for random-order stealing.
    coprimes: Vec<usize>,
    /// Dead G's beyond what the P's keep (Go's sched.gFree): P's move half their list here
    /// when it is full and refill from here when it is empty, so G's that die on one P are
    /// reused by spawns on another instead of being freed and reallocated across threads.
    /// Newest at the back (taken first); trimming frees the oldest from the front, hence a
    /// deque.
    gfree: Mutex<VecDeque<FreeG>>,
    /// `gfree.len()`, kept under its lock, read without it (Relaxed: a hint; a stale value
    /// only costs a needless lock or one fresh allocation) so that spawns do not take the
    /// lock just to find the list empty.
    gfree_len: AtomicUsize,
    /// Claimed by the one idle M giving memory back (see `M::release_global_memory`).
    releasing: AtomicBool,
}

static SCHED: OnceLock<Sched> = OnceLock::new();

/// The scheduler, started on first use.
pub(crate) fn sched() -> &'static Sched {
    SCHED.get_or_init(|| {
        crate::join::install_panic_note();
        Sched::new(Config::from_env())
    })
}

thread_local! {
    /// The P held by the M on this thread, or NO_P (also on non-M threads).
    static CUR_P: Cell<usize> = const { Cell::new(NO_P) };
    /// The G running on this thread, or null.
    static CUR_G: Cell<*const G> = const { Cell::new(ptr::null()) };
    /// The G inside `blocking` on this thread, or null.
    static BLOCKING_G: Cell<*const G> = const { Cell::new(ptr::null()) };
}

// Thread-local accessors are never inlined: a G may move to another OS thread at any
// blocking point, and a TLS address computed before one and reused after it (LLVM may cache
// it within one function) would point into the old thread's storage.

/// The P of the current M, or NO_P.
#[inline(never)]
pub(crate) fn current_p() -> usize {
    CUR_P.with(|c| c.get())
}

#[inline(never)]
pub(crate) fn set_current_p(p: usize) {
    CUR_P.with(|c| c.set(p));
}

/// Go's `sync_runtime_canSpin`: whether a locker that found a lock held should spin a
/// little (`iter` spins so far) before parking. Spinning pays only if the holder is running
/// on another core and can release soon, and costs nothing that waits for this core: so at
/// most 4 spins, more than one P, at least one other P running G's (not idle, not looking
/// for work), and nothing queued on our own P. A plain OS thread spins under the same rules
/// but the last.
pub(crate) fn can_spin(iter: u32) -> bool {
    const ACTIVE_SPIN: u32 = 4;
    if iter >= ACTIVE_SPIN {
        return false;
    }
    let s = sched();
    if s.procs <= s.npidle.load(Ordering::Relaxed) + s.nmspinning.load(Ordering::Relaxed) + 1 {
        return false;
    }
    match current_p() {
        NO_P => true,
        p => !s.ps[p].has_work(),
    }
}

/// The G running on this thread, or null.
#[inline(never)]
pub(crate) fn current_g() -> *const G {
    CUR_G.with(|c| c.get())
}

/// The G running on this thread, or inside `blocking` on it; null on a plain thread.
pub(crate) fn current_or_blocking_g() -> *const G {
    let g = current_g();
    if g.is_null() {
        BLOCKING_G.with(|c| c.get())
    } else {
        g
    }
}

/// `current_g` for the signal handler: null if the thread-local is already gone.
pub(crate) fn current_g_for_signal() -> *const G {
    let g = CUR_G.try_with(|c| c.get()).unwrap_or(ptr::null());
    if g.is_null() {
        BLOCKING_G.try_with(|c| c.get()).unwrap_or(ptr::null())
    } else {
        g
    }
}

/// Marks this thread as running `g` inside `blocking` (null: no longer): the thread then
/// acts as a plain OS thread (no current G or P), but the overflow handler still knows
/// whose stack it is on.
#[inline(never)]
pub(crate) fn set_blocking_g(g: *const G) {
    BLOCKING_G.with(|c| c.set(g));
}

#[inline(never)]
pub(crate) fn set_current_g(g: *const G) {
    CUR_G.with(|c| c.set(g));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover from poisoning anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Sched {
    fn new(cfg: Config) -> Sched {
        assert!((1..=MAX_PROCS).contains(&cfg.procs));
        stack::set_guard_mode(cfg.guard_mode);
        crate::shrink::configure(cfg.shrink_period);
        signal::install();
        if cfg.dump {
            crate::dump::install_sigquit();
        }
        if cfg.raise_nofile {
            raise_nofile();
        }
        let ps: Box<[P]> = (0..cfg.procs)
            .map(|_| {
                let w = Worker::new_fifo();
                let stealer = w.stealer();
                let sw = Worker::new_lifo();
                let spawn_stealer = sw.stealer();
                P {
                    runq: UnsafeCell::new(w),
                    stealer,
                    spawnq: UnsafeCell::new(sw),
                    spawn_stealer,
                    runnext: AtomicPtr::new(ptr::null_mut()),
                    local: UnsafeCell::new(PLocal {
                        schedtick: 0,
                        runnext_streak: 0,
                        gfree: Vec::new(),
                        stacks: Vec::new(),
                        goid_next: 0,
                        goid_end: 0,
                    }),
                    spawned: AtomicU64::new(0),
                    finished: AtomicU64::new(0),
                    parked: AtomicU64::new(0),
                    unparked: AtomicU64::new(0),
                    stacks_cached: AtomicUsize::new(0),
                    status: AtomicU8::new(P_IDLE),
                    syscalltick: AtomicU64::new(0),
                    tick: AtomicU64::new(0),
                    running_g: AtomicU64::new(0),
                }
            })
            .collect();
        let coprimes = (1..=cfg.procs)
            .filter(|&i| gcd(i, cfg.procs) == 1)
            .collect();
        Sched {
            procs: cfg.procs,
            ps,
            injector: Injector::new(),
            urgent: Injector::new(),
            nurgent: CachePadded::new(AtomicUsize::new(0)),
            // Highest index last so P 0 is taken first.
            idle: Mutex::new(Idle {
                pidle: (0..cfg.procs).rev().collect(),
                midle: Vec::new(),
            }),
            npidle: AtomicUsize::new(cfg.procs),
            nmspinning: AtomicUsize::new(0),
            mcount: AtomicUsize::new(0),
            nthreads: AtomicUsize::new(0),
            max_threads: cfg.max_threads,
            sysmon_once: Once::new(),
            sysmon_thread: OnceLock::new(),
            sysmon_sleeping: AtomicBool::new(false),
            sysmon_indefinite: AtomicBool::new(false),
            sysmon_calm: AtomicBool::new(false),
            schedtrace: cfg.schedtrace,
            hogs: cfg.hogs,
            started: std::time::Instant::now(),
            coarse: CachePadded::new(AtomicU32::new(0)),
            ext_unparked: AtomicU64::new(0),
            stacks: StackClass::for_size(cfg.stack_size),
            timers: Timers::new(),
            ext_spawned: AtomicU64::new(0),
            next_goid: AtomicU64::new(1),
            coprimes,
            gfree: Mutex::new(VecDeque::new()),
            gfree_len: AtomicUsize::new(0),
            releasing: AtomicBool::new(false),
        }
    }

    /// G's spawned and not yet finished.
    pub(crate) fn live_gs(&self) -> usize {
        let mut spawned = self.ext_spawned.load(Ordering::Relaxed);
        let mut finished = 0u64;
        for p in self.ps.iter() {
            spawned += p.spawned.load(Ordering::Relaxed);
            finished += p.finished.load(Ordering::Relaxed);
        }
        spawned.saturating_sub(finished) as usize
    }

    // ---- free G lists -----------------------------------------------------------------

    /// Takes a free G from a local list (a P's or a plain thread's), refilling the list
    /// with half a list's worth from the global one when it is empty.
    fn gfree_get(&self, local: &mut Vec<FreeG>) -> Option<NonNull<G>> {
        if local.is_empty() && self.gfree_len.load(Ordering::Relaxed) > 0 {
            let mut global = lock(&self.gfree);
            let n = global.len().min(GFREE_CAP / 2);
            let at = global.len() - n;
            local.extend(global.drain(at..));
            self.gfree_len.store(global.len(), Ordering::Relaxed);
        }
        local.pop().map(|f| f.0)
    }

    /// Puts a free G on a local list; a full list first moves half to the global list (or,
    /// past its cap, frees them for good).
    fn gfree_put(&self, local: &mut Vec<FreeG>, g: FreeG) {
        if local.len() >= GFREE_CAP {
            let mut global = lock(&self.gfree);
            let room = GFREE_GLOBAL_CAP.saturating_sub(global.len());
            let moved = (GFREE_CAP / 2).min(room);
            global.extend(local.drain(..moved));
            self.gfree_len.store(global.len(), Ordering::Relaxed);
            drop(global);
            for f in local.drain(..GFREE_CAP / 2 - moved) {
                // SAFETY: on no list any more, no references.
                unsafe { G::dealloc(f.0) };
            }
        }
        local.push(g);
    }

    /// Frees up to `batch` G structs from the global free list, keeping `keep`; returns how
    /// many.
    fn trim_gfree(&self, keep: usize, batch: usize) -> usize {
        if self.gfree_len.load(Ordering::Relaxed) <= keep {
            return 0;
        }
        let doomed: Vec<FreeG> = {
            let mut global = lock(&self.gfree);
            let n = global.len().saturating_sub(keep).min(batch);
            // The oldest entries: the most recently freed stay for the next spawns.
            let doomed = global.drain(..n).collect();
            self.gfree_len.store(global.len(), Ordering::Relaxed);
            doomed
        };
        let n = doomed.len();
        for f in doomed {
            // SAFETY: taken off the list; free G's have no references.
            unsafe { G::dealloc(f.0) };
        }
        n
    }

    /// Whether idle M's have memory to give back: dirty stacks in the global lists, or
    /// more spare G structs than [`GFREE_KEEP_IDLE`]. Takes the lists' locks: the
    /// no-stranding argument of `M::release_global_memory` rests on them.
    fn memory_pending(&self) -> bool {
        stack::any_dirty() || lock(&self.gfree).len() > GFREE_KEEP_IDLE
    }

    /// A thread outside the runtime (no P) just put G structs on the global free list.
    /// While some P is held, the M holding it will go idle later and free them; but with
    /// every P idle no M goes idle again, so once enough have piled up, wake an idle M to
    /// give them back (see "Giving memory back" on `M::release_global_memory`).
    fn request_release(&self) {
        if self.gfree_len.load(Ordering::Relaxed) <= GFREE_KEEP_IDLE + GFREE_EXT_SLACK
            || self.releasing.load(Ordering::Relaxed)
            || self.npidle.load(Ordering::Relaxed) != self.procs
        {
            return;
        }
        let idle = lock(&self.idle);
        if let Some(m) = idle.midle.last() {
            // Relaxed: `unpark` synchronizes with the `park` it ends (std's guarantee).
            m.release.store(true, Ordering::Relaxed);
            m.wake();
        }
    }

    /// G structs on the global free list (for tests and diagnostics).
    pub(crate) fn free_gs(&self) -> usize {
        self.gfree_len.load(Ordering::Relaxed)
    }

    // ---- spawning -------------------------------------------------------------------

    /// Creates a G for `f` and makes it runnable; returns the join handle's reference and
    /// the G's id. `stack` is a stack bound eagerly (`Builder`), or `None` to bind one when
    /// the G first runs.
    #[track_caller]
    pub(crate) fn spawn_g<F, T>(
        &'static self,
        f: F,
        name: Option<Box<str>>,
        class: &'static StackClass,
        stack: Option<GStack>,
    ) -> GRef
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let site = std::panic::Location::caller();
        let named = name.is_some();
        let pid = current_p();
        let (g, handle) = if pid != NO_P {
            // SAFETY: CUR_P says this thread's M holds the P.
            let l = unsafe { self.ps[pid].local() };
            if l.goid_next == l.goid_end {
                l.goid_next = self.next_goid.fetch_add(GOID_BATCH, Ordering::Relaxed);
                l.goid_end = l.goid_next + GOID_BATCH;
            }
            let id = l.goid_next;
            l.goid_next += 1;
            GRef::new_task(self.gfree_get(&mut l.gfree), id, name, class, site, f)
        } else {
            let id = self.next_goid.fetch_add(1, Ordering::Relaxed);
            GRef::new_task(ext_gfree_pop(self), id, name, class, site, f)
        };
        if let Some(st) = stack {
            // SAFETY: the G is not published yet; we own it.
            unsafe { g.owned() }.coro = Some(new_coro(st, g.as_ptr()));
        }
        if named {
            // SAFETY: as above.
            if let Some(n) = unsafe { g.owned() }.name() {
                crate::dump::note_name(g.id(), n);
            }
        }
        if pid != NO_P {
            let p = &self.ps[pid];
            // Owner-only counter: a plain load and store (see P).
            p.spawned
                .store(p.spawned.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            // A new G runs next (Go's newproc); the one it displaces goes on the stack.
            // SAFETY: we hold `p`.
            unsafe { self.runqput(p, g, true) };
            self.wakep(false);
        } else {
            self.ext_spawned.fetch_add(1, Ordering::Relaxed);
            self.injector.push(g);
            self.wakep(true);
        }
        handle
    }

    /// Notes that a G finished on the current P. Called by the G itself, on its stack,
    /// before it publishes its result (so `join` never sees a finished G still counted).
    pub(crate) fn note_finished(&self) {
        let pid = current_p();
        debug_assert_ne!(pid, NO_P, "a G always runs on an M holding a P");
        let p = &self.ps[pid];
        p.finished
            .store(p.finished.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    // ---- run queues -----------------------------------------------------------------

    /// Puts a readied `g` on `p`: in `runnext` if `next` (the G it displaces goes on top of
    /// the spawn stack: it was usually spawned just before, by the G now spawning or waking
    /// another), else at the FIFO's tail. A full queue spills its oldest half to the global
    /// queue (Go's runqputslow).
    ///
    /// # Safety
    /// The caller holds `p`.
    unsafe fn runqput(&self, p: &P, g: GRef, next: bool) {
        if next {
            // AcqRel: Release publishes the G to a stealer that swaps it out; Acquire takes
            // the old one's contents from whoever put it there.
            let old = p.runnext.swap(g.into_raw(), Ordering::AcqRel);
            if !old.is_null() {
                // SAFETY: non-null runnext values come from `GRef::into_raw`, and the swap
                // made us the only owner of this one; the caller holds `p`.
                unsafe { self.spawnqput(p, GRef::from_raw(old)) };
            }
            return;
        }
        // SAFETY: the caller holds `p`.
        let q = unsafe { p.runq() };
        if q.len() >= RUNQ_CAP {
            self.spill(&p.stealer);
        }
        q.push(g);
    }

    /// Puts a newly spawned `g` on top of `p`'s spawn stack (spilling its oldest half to the
    /// global queue when it is full).
    ///
    /// # Safety
    /// The caller holds `p`.
    unsafe fn spawnqput(&self, p: &P, g: GRef) {
        // SAFETY: the caller holds `p`.
        let q = unsafe { p.spawnq() };
        if q.len() >= RUNQ_CAP {
            self.spill(&p.spawn_stealer);
        }
        q.push(g);
    }

    /// Moves the oldest half of a full local queue to the global queue.
    fn spill(&self, from: &Stealer<GRef>) {
        let mut moved = 0;
        while moved < RUNQ_CAP / 2 {
            match from.steal() {
                Steal::Success(x) => {
                    self.injector.push(x);
                    moved += 1;
                }
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
    }

    /// Takes the next G of `p`: `runnext`, then the newest spawned G, then the oldest
    /// readied one.
    ///
    /// Fairness guards, since neither `runnext` nor a stack is fair: after
    /// [`RUNNEXT_STREAK`] G's taken from `runnext` in a row (two G's readying each other, a
    /// channel ping-pong, would otherwise run forever) the FIFO's head goes first once; and
    /// `find_runnable` gives the FIFO's head, then the stack's oldest, a turn on fixed ticks.
    ///
    /// # Safety
    /// The caller holds `p`.
    unsafe fn runqget(&self, p: &P) -> Option<GRef> {
        // SAFETY: the caller holds `p`.
        let (l, q, sq) = unsafe { (p.local(), p.runq(), p.spawnq()) };
        if l.runnext_streak >= RUNNEXT_STREAK {
            l.runnext_streak = 0;
            if let Some(g) = q.pop().or_else(|| oldest(&p.spawn_stealer)) {
                return Some(g);
            }
        }
        if !p.runnext.load(Ordering::Relaxed).is_null() {
            // Acquire: pairs with the AcqRel swap that put the G there.
            let g = p.runnext.swap(ptr::null_mut(), Ordering::Acquire);
            if !g.is_null() {
                l.runnext_streak += 1;
                // SAFETY: from `GRef::into_raw`; the swap made us its only owner.
                return Some(unsafe { GRef::from_raw(g) });
            }
        }
        l.runnext_streak = 0;
        sq.pop().or_else(|| q.pop())
    }

    /// Takes a batch from the global queue into `p`'s local queue, returning one G.
    ///
    /// # Safety
    /// The caller holds `p`.
    unsafe fn globrunqget(&self, p: &P) -> Option<GRef> {
        let n = (self.injector.len() / self.procs + 1).min(STEAL_MAX);
        // SAFETY: the caller holds `p`.
        let q = unsafe { p.runq() };
        loop {
            match self.injector.steal_batch_with_limit_and_pop(q, n) {
                Steal::Success(g) => return Some(g),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Makes a parked G runnable from wherever the caller is: on the current P's `runnext`
    /// if this thread is an M, else on the global queue. Then `wakep`.
    ///
    /// `next` puts it in `runnext`, to run as soon as the waker blocks (Go's `ready`: what
    /// makes a hand-off between two G's fast); otherwise at the tail of the local queue.
    /// A G from `urgent`, if any.
    #[inline]
    fn take_urgent(&self) -> Option<GRef> {
        if self.nurgent.load(Ordering::Relaxed) == 0 {
            return None;
        }
        loop {
            match self.urgent.steal() {
                Steal::Success(g) => {
                    self.nurgent.fetch_sub(1, Ordering::Relaxed);
                    return Some(g);
                }
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }

    pub(crate) fn ready(&self, g: GRef, next: bool) {
        let pid = current_p();
        if pid != NO_P {
            let p = &self.ps[pid];
            // Owner-only counter (see P).
            p.unparked
                .store(p.unparked.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            // SAFETY: CUR_P says this thread's M holds the P.
            unsafe { self.runqput(p, g, next) };
            self.wakep(false);
        } else {
            self.ext_unparked.fetch_add(1, Ordering::Relaxed);
            self.injector.push(g);
            self.wakep(true);
        }
    }

    /// `ready(g, true)` for a G a timer woke: `runnext` of this M's P, or, on an M without a
    /// P (the idle M that sleeps on the timers), `urgent`, ahead of every queue.
    pub(crate) fn ready_urgent(&self, g: GRef) {
        if current_p() != NO_P {
            self.ready(g, true);
        } else {
            self.ext_unparked.fetch_add(1, Ordering::Relaxed);
            self.nurgent.fetch_add(1, Ordering::Relaxed);
            self.urgent.push(g);
            self.wakep(true);
        }
    }

    /// Makes a batch of G's runnable (the ones one poll of the netpoller readied): on the
    /// current P's queue if this thread is an M, else on the global queue; one `wakep` for
    /// the lot.
    pub(crate) fn inject(&self, batch: Vec<GRef>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let pid = current_p();
        if pid != NO_P {
            let p = &self.ps[pid];
            // Owner-only counter (see P).
            p.unparked
                .store(p.unparked.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            for g in batch {
                // SAFETY: CUR_P says this thread's M holds the P.
                unsafe { self.runqput(p, g, false) };
            }
            self.wakep(false);
        } else {
            self.ext_unparked.fetch_add(n, Ordering::Relaxed);
            for g in batch {
                self.injector.push(g);
            }
            self.wakep(true);
        }
    }

    /// Polls the netpoller without blocking, if any G waits on I/O, and queues what it
    /// readies. True if it readied any G.
    pub(crate) fn netpoll_now(&self) -> bool {
        match crate::net::poller_if_init() {
            // Not while an idle M sleeps in the poller: it gets the events and hands them
            // over (Go's findRunnable skips its poll in the same case), and a poll per miss
            // would tax every busy program that merely has a socket open.
            Some(pl) if pl.waiting() > 0 && !pl.is_sleeping() => {
                let mut batch = Vec::new();
                pl.poll(Some(std::time::Duration::ZERO), &mut batch);
                let any = !batch.is_empty();
                self.inject(batch);
                any
            }
            _ => false,
        }
    }

    /// Polls the netpoller without blocking for up to [`NETPOLL_SPIN`] while G's wait on
    /// I/O and nothing else is runnable; true as soon as a poll readies a G or any queue
    /// has work (the caller then looks again, stealing included).
    fn netpoll_spin(&self) -> bool {
        // Only while the network is busy: the last poll readied something. A program with
        // a socket merely open (a G waiting in `accept`) does not spin.
        if crate::net::poller_if_init().map_or(true, |p| p.waiting() == 0 || !p.recently_busy()) {
            return false;
        }
        let start = std::time::Instant::now();
        while start.elapsed() < NETPOLL_SPIN {
            // Any queue, not just the network: work that shows up on another P is stolen
            // at once rather than after the spin.
            if self.netpoll_now() || self.any_work() {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    // ---- waking M's -----------------------------------------------------------------

    /// Wakes an idle M with an idle P if there is an idle P and no M is spinning (Go's
    /// wakep). Called after publishing work.
    ///
    /// `external` says the work went to the global queue from a thread that holds no P:
    /// then nobody else is bound to find it, and the SeqCst fence of the protocol is
    /// needed. Work put on the caller's own P needs no fence: if the wake-up is missed, the
    /// M holding that P runs the G itself when the current G blocks, yields or ends (Go's
    /// `ready` makes the same trade); only parallelism is delayed, never the G.
    pub(crate) fn wakep(&self, external: bool) {
        // The submitter's half of the protocol in the module docs (`protocol::idle`,
        // model-checked in tests/loom.rs).
        if crate::protocol::idle::should_wake(&self.npidle, &self.nmspinning, external) {
            self.startm(true);
        }
    }

    /// Gets an idle P and runs an M on it: a parked M if any, else a new thread. With
    /// `spinning`, the caller has already counted the M in `nmspinning`.
    fn startm(&self, spinning: bool) {
        let mut idle = lock(&self.idle);
        let Some(pid) = self.pidle_pop(&mut idle, NO_P) else {
            drop(idle);
            if spinning {
                self.nmspinning.fetch_sub(1, Ordering::SeqCst);
            }
            return;
        };
        let m = idle.midle.pop();
        drop(idle);
        self.run_m(pid, m, spinning);
    }

    /// Runs an M on `pid`, which the caller took from a G inside `blocking` (its status
    /// `P_IDLE`): a parked M if any, else a new thread; at the thread cap, the P goes back
    /// to the idle list until an M comes back.
    pub(crate) fn startm_on(&self, pid: usize, spinning: bool) {
        self.ps[pid].status.store(P_RUNNING, Ordering::Relaxed);
        let m = lock(&self.idle).midle.pop();
        self.run_m(pid, m, spinning);
    }

    /// Hands `pid` to the parked M `m`, or to a new thread if there is none.
    fn run_m(&self, pid: usize, m: Option<Arc<MNote>>, spinning: bool) {
        match m {
            Some(note) => {
                note.spinning.store(spinning, Ordering::Relaxed);
                // Release: hands the P (and `spinning`) over; pairs with the parked M's
                // Acquire swap of `nextp`.
                note.nextp.store(pid, Ordering::Release);
                note.wake();
            }
            None => self.newm(pid, spinning),
        }
    }

    /// Whether an M could be had now for a P: a parked one, or room under the thread cap.
    pub(crate) fn can_start_m(&self) -> bool {
        self.nthreads.load(Ordering::Relaxed) < self.max_threads
            || !lock(&self.idle).midle.is_empty()
    }

    /// Counts one more runtime thread if the cap allows.
    fn reserve_thread(&self) -> bool {
        self.nthreads
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_threads).then_some(n + 1)
            })
            .is_ok()
    }

    fn newm(&self, pid: usize, spinning: bool) {
        self.sysmon_once.call_once(|| {
            crate::deadlock::prepare();
            if self.reserve_thread() {
                let spawned = std::thread::Builder::new()
                    .name("gort-sysmon".into())
                    .spawn(crate::sysmon::sysmon);
                if let Err(e) = spawned {
                    self.nthreads.fetch_sub(1, Ordering::Relaxed);
                    eprintln!(
                        "gort: cannot start the monitor thread: {e}; G's blocked in \
                         `blocking` keep their P"
                    );
                }
            }
        });
        if self.reserve_thread() {
            let n = self.mcount.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name(format!("gort-m{n}"))
                .spawn(move || mstart(pid, spinning));
            match spawned {
                Ok(_) => return,
                Err(e) => {
                    self.nthreads.fetch_sub(1, Ordering::Relaxed);
                    // No thread: say why; the P goes back below, for another M.
                    eprintln!("gort: cannot start an OS thread for the scheduler: {e}");
                }
            }
        }
        // No M (or at GORT_MAXTHREADS): the P waits in the idle list for an M to come back.
        if spinning {
            self.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
        self.pidleput(pid);
    }

    fn pidleput(&self, pid: usize) {
        let mut idle = lock(&self.idle);
        self.pidle_push(&mut idle, pid);
    }

    /// Go's `handoffp`: finds a use for a P taken from a G inside `blocking` (its status
    /// already `P_IDLE`). With work around, an M runs it; with nobody looking for work, a
    /// spinning M does; else it goes on the idle list, followed — the idler's half of the
    /// protocol in the module docs — by one more look at the queues.
    pub(crate) fn handoffp(&self, pid: usize) {
        if self.ps[pid].has_work() || !self.global_empty() {
            self.startm_on(pid, false);
            return;
        }
        if self.nmspinning.load(Ordering::Relaxed) + self.npidle.load(Ordering::Relaxed) == 0
            && self
                .nmspinning
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            self.startm_on(pid, true);
            return;
        }
        self.pidleput(pid);
        // SeqCst fence: pairs with the fence in `wakep` (module docs).
        fence(Ordering::SeqCst);
        if self.any_work() {
            self.wakep(false);
        }
    }

    /// Pushes `pid` on the idle list. The caller holds the idle lock.
    fn pidle_push(&self, idle: &mut Idle, pid: usize) {
        self.ps[pid].status.store(P_IDLE, Ordering::Relaxed);
        idle.pidle.push(pid);
        crate::protocol::idle::p_idled(&self.npidle);
    }

    /// Takes an idle P, `want` if it is idle, else the most recently idled one. The caller
    /// holds the idle lock.
    fn pidle_pop(&self, idle: &mut Idle, want: usize) -> Option<usize> {
        let pid = match idle.pidle.iter().rposition(|&p| p == want) {
            Some(i) => idle.pidle.remove(i),
            None => idle.pidle.pop()?,
        };
        if self.npidle.fetch_sub(1, Ordering::SeqCst) == self.procs {
            self.end_all_idle();
        }
        self.ps[pid].status.store(P_RUNNING, Ordering::Relaxed);
        Some(pid)
    }

    /// Every P idle with nothing queued anywhere and no M spinning (the deadlock check's
    /// view; a busy runtime makes it false at once). SeqCst loads: see
    /// `deadlock::plain_parked`.
    pub(crate) fn all_idle(&self) -> bool {
        self.npidle.load(Ordering::SeqCst) == self.procs
            && self.nmspinning.load(Ordering::SeqCst) == 0
            && self.global_empty()
            && self.nurgent.load(Ordering::SeqCst) == 0
            && self.ps.iter().all(|p| !p.has_work())
    }

    /// OS threads the runtime runs (M's, sysmon, a trimmer), counted from before they
    /// start to after they end. SeqCst: see `deadlock::plain_parked`.
    pub(crate) fn runtime_threads(&self) -> usize {
        self.nthreads.load(Ordering::SeqCst)
    }

    /// Every P was idle until now: sysmon may sleep with no deadline, and the coarse clock
    /// has stood still since. Refresh the clock; and if it had stood still for a while
    /// (sysmon asleep, not merely between two of a busy server's bursts), wake sysmon, so
    /// that it keeps the clock (and watches the P's) while the runtime is busy. Waking it at
    /// every burst would cost a context switch each (a quarter of a one-core echo server's
    /// throughput, measured).
    #[cold]
    fn end_all_idle(&self) {
        let before = self.coarse_now();
        self.tick_coarse(std::time::Instant::now());
        // SeqCst load: the other half of the store-buffer pair with sysmon's store of the
        // flag before its last look at `npidle` (either it sees this P taken, or we see it
        // asleep).
        if self.coarse_now().wrapping_sub(before) >= SYSMON_REWAKE_MS
            && self.sysmon_sleeping.load(Ordering::SeqCst)
        {
            self.sysmon_calm.store(true, Ordering::Relaxed);
            crate::sysmon::wake_sysmon(self);
        }
    }

    /// The coarse clock (see the field).
    pub(crate) fn coarse_now(&self) -> u32 {
        self.coarse.load(Ordering::Relaxed)
    }

    /// Refreshes the coarse clock from `now`.
    pub(crate) fn tick_coarse(&self, now: std::time::Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u32;
        self.coarse.store(ms, Ordering::Relaxed);
    }

    /// Takes an idle P for the caller's M (preferring `want`), if there is one.
    pub(crate) fn pidleget(&self, want: usize) -> Option<usize> {
        if self.npidle.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.pidle_pop(&mut lock(&self.idle), want)
    }

    /// The P's.
    pub(crate) fn ps(&self) -> &[P] {
        &self.ps
    }

    /// The scheduler's figures for schedtrace and `stats` (each read on its own, so a busy
    /// runtime gives a blurred picture; a quiet one, an exact one).
    pub(crate) fn view(&self) -> SchedView {
        let (idle_threads, idle_procs) = {
            let idle = lock(&self.idle);
            (idle.midle.len(), idle.pidle.len())
        };
        let local = self
            .ps
            .iter()
            .map(|p| {
                p.stealer.len()
                    + p.spawn_stealer.len()
                    + usize::from(!p.runnext.load(Ordering::Relaxed).is_null())
            })
            .collect();
        let mut parked = 0u64;
        let mut unparked = self.ext_unparked.load(Ordering::Relaxed);
        let mut stacks_cached = 0;
        for p in self.ps.iter() {
            parked += p.parked.load(Ordering::Relaxed);
            unparked += p.unparked.load(Ordering::Relaxed);
            stacks_cached += p.stacks_cached.load(Ordering::Relaxed);
        }
        SchedView {
            procs: self.procs,
            idle_procs,
            threads: self.nthreads.load(Ordering::Relaxed),
            spinning_threads: self.nmspinning.load(Ordering::Relaxed),
            idle_threads,
            global_queue: self.injector.len(),
            local_queues: local,
            live_gs: self.live_gs(),
            parked_gs: parked.saturating_sub(unparked) as usize,
            stacks_cached,
        }
    }

    /// Is there a runnable G in any queue?
    pub(crate) fn any_work(&self) -> bool {
        !self.global_empty() || self.ps.iter().any(P::has_work)
    }

    /// Both global queues are empty (`injector` and `urgent`; crossbeam's `is_empty` loads
    /// are SeqCst, as the idle protocol needs).
    pub(crate) fn global_empty(&self) -> bool {
        self.injector.is_empty() && self.urgent.is_empty()
    }
}

/// See `Sched::view`.
pub(crate) struct SchedView {
    pub(crate) procs: usize,
    pub(crate) idle_procs: usize,
    pub(crate) threads: usize,
    pub(crate) spinning_threads: usize,
    pub(crate) idle_threads: usize,
    pub(crate) global_queue: usize,
    pub(crate) local_queues: Vec<usize>,
    pub(crate) live_gs: usize,
    pub(crate) parked_gs: usize,
    /// In the P's caches only.
    pub(crate) stacks_cached: usize,
}

/// An M: the scheduler loop on an OS thread's own stack.
struct M {
    sched: &'static Sched,
    /// The held P's index.
    p: usize,
    spinning: bool,
    note: Arc<MNote>,
    rng: u64,
}

fn mstart(pid: usize, spinning: bool) {
    // User code that may panic runs on an M only inside `catch_unwind` (a G's closure) or
    // `drop_contained`; anything else unwinding this far is a gort bug, and must not end the
    // thread quietly with its P (`unwind.rs`).
    let _abort = crate::unwind::AbortOnUnwind("a scheduler thread (M)");
    signal::ensure_altstack();
    let sched = sched();
    let mut m = M {
        sched,
        p: pid,
        spinning,
        note: Arc::new(MNote {
            nextp: AtomicUsize::new(NO_P),
            spinning: AtomicBool::new(false),
            release: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            thread: std::thread::current(),
        }),
        rng: 0x9E37_79B9_7F4A_7C15 ^ (pid as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
    };
    set_current_p(pid);
    m.schedule();
}

impl M {
    fn p(&self) -> &'static P {
        &self.sched.ps[self.p]
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Go's `schedule`: find a G, run it, forever.
    fn schedule(&mut self) -> ! {
        loop {
            if self.p == NO_P {
                // Our G left `blocking` and found no P: sleep until handed one.
                self.stopm();
            }
            let g = self.find_runnable();
            if self.spinning {
                self.reset_spinning();
            }
            self.execute(g);
        }
    }

    /// Stops spinning; the last spinner to find work wakes another M, since there may be
    /// more work than this one can run.
    fn reset_spinning(&mut self) {
        self.spinning = false;
        if self.sched.nmspinning.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.sched.wakep(false);
        }
    }

    /// Go's `findRunnable`: local, global, steal; else give the P back and sleep.
    fn find_runnable(&mut self) -> GRef {
        let s = self.sched;
        'top: loop {
            let p = self.p();
            // SAFETY: this M holds `p`.
            let tick = unsafe { p.local() }.schedtick;
            if tick % GLOBAL_TICK == 0 {
                // Fairness: timers, the network and the global queues get a look however
                // busy the P is.
                if let Some(g) = s.take_urgent() {
                    return g;
                }
                s.timers.run_due();
                s.netpoll_now();
                if !s.injector.is_empty() {
                    // SAFETY: this M holds `p`.
                    if let Some(g) = unsafe { s.globrunqget(p) } {
                        return g;
                    }
                }
            } else if tick % GLOBAL_TICK == GLOBAL_TICK / 2 {
                // Fairness within the P: readied G's are not held up by a stream of spawns.
                // SAFETY: this M holds `p`.
                if let Some(g) = unsafe { p.runq() }.pop() {
                    return g;
                }
            }
            if tick % SPAWN_OLDEST_TICK == 0 {
                // Nor are the oldest spawned G's, however many newer ones keep coming.
                if let Some(g) = oldest(&p.spawn_stealer) {
                    return g;
                }
            }
            // SAFETY: this M holds `p`.
            if let Some(g) = unsafe { s.runqget(p) } {
                return g;
            }
            if let Some(g) = s.take_urgent() {
                return g;
            }
            if !s.injector.is_empty() {
                // SAFETY: this M holds `p`.
                if let Some(g) = unsafe { s.globrunqget(p) } {
                    return g;
                }
            }
            // Due timers: what they wake lands on this P.
            if s.timers.run_due() > 0 {
                continue 'top;
            }
            // Ready sockets (Go's findRunnable polls the network before stealing): what
            // they ready lands on this P.
            if s.netpoll_now() {
                continue 'top;
            }
            // Steal, if not too many M's already are.
            let busy = s.procs - s.npidle.load(Ordering::Relaxed);
            if self.spinning || 2 * s.nmspinning.load(Ordering::Relaxed) < busy {
                if !self.spinning {
                    self.spinning = true;
                    s.nmspinning.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(g) = self.steal_work() {
                    return g;
                }
            }
            // G's wait on sockets: their replies are often microseconds away, and giving the
            // P back to sleep in the poller costs two context switches. Poll a little longer
            // first (Go's M's spin in findRunnable the same way before they block).
            if s.netpoll_spin() {
                continue 'top;
            }
            // Nothing: scrub this P's stack cache while we still hold the P (off the hot
            // path), then give the P back. (The global lists are scrubbed in `stopm`.)
            self.release_memory();
            {
                let mut idle = lock(&s.idle);
                if !s.global_empty() {
                    drop(idle);
                    if let Some(g) = s.take_urgent() {
                        return g;
                    }
                    // SAFETY: this M still holds `p`.
                    if let Some(g) = unsafe { s.globrunqget(p) } {
                        return g;
                    }
                    continue 'top;
                }
                s.pidle_push(&mut idle, self.p);
            }
            self.p = NO_P;
            set_current_p(NO_P);
            // The idler's half of the protocol (module docs, `protocol::idle`): stop
            // spinning, SeqCst fence pairing with the one in `wakep`; then one more look at
            // every queue.
            crate::protocol::idle::going_idle(&s.nmspinning, self.spinning);
            self.spinning = false;
            if s.any_work() {
                let mut idle = lock(&s.idle);
                if let Some(pid) = s.pidle_pop(&mut idle, NO_P) {
                    drop(idle);
                    self.p = pid;
                    set_current_p(pid);
                    self.spinning = true;
                    s.nmspinning.fetch_add(1, Ordering::SeqCst);
                    continue 'top;
                }
            }
            self.stopm();
        }
    }

    /// Visits the other P's in a random order, taking half of a victim's queue; the last
    /// round also takes a victim's runnext.
    fn steal_work(&mut self) -> Option<GRef> {
        let s = self.sched;
        let n = s.procs;
        if n == 1 {
            return None;
        }
        let p = self.p();
        // SAFETY: this M holds `p`, the destination.
        let (q, sq) = unsafe { (p.runq(), p.spawnq()) };
        for round in 0..STEAL_ROUNDS {
            let r = self.next_rand() as usize;
            let start = r % n;
            let stride = s.coprimes[(r >> 16) % s.coprimes.len()];
            let mut i = start;
            for _ in 0..n {
                if i != self.p {
                    let victim = &s.ps[i];
                    for (from, to) in [(&victim.spawn_stealer, sq), (&victim.stealer, q)] {
                        loop {
                            match from.steal_batch_with_limit_and_pop(to, STEAL_MAX) {
                                Steal::Success(g) => return Some(g),
                                Steal::Empty => break,
                                Steal::Retry => continue,
                            }
                        }
                    }
                    if round == STEAL_ROUNDS - 1 {
                        if let Some(g) = steal_runnext(victim) {
                            return Some(g);
                        }
                    }
                }
                i = (i + stride) % n;
            }
            if !s.injector.is_empty() {
                // SAFETY: this M holds `p`.
                if let Some(g) = unsafe { s.globrunqget(p) } {
                    return Some(g);
                }
            }
        }
        None
    }

    /// Gives back the deep pages of this P's cached stacks, on the way to sleep (off the hot
    /// path; at most 32 stacks, and the P is needed to reach them).
    fn release_memory(&mut self) {
        // SAFETY: this M holds its P.
        let l = unsafe { self.p().local() };
        for st in l.stacks.iter_mut().filter(|st| st.dirty) {
            st.release_below(stack::KEEP_TOP);
            st.dirty = false;
        }
    }

    /// Gives memory back while parked on the idle list, P already returned: the deep pages
    /// of the global stack lists' dirty stacks, and spare G structs beyond
    /// [`GFREE_KEEP_IDLE`].
    ///
    /// # Giving memory back
    ///
    /// After a burst of a million G's this is a second or more of `madvise` and `free`
    /// calls. It must not hold a P or delay a wake-up, and it must finish while the runtime
    /// stays idle, with no new work to prompt it; but a burst that follows another at once
    /// should find the first one's G structs and stacks still there. So one idle M at a time
    /// claims the job (`releasing`) when it goes idle, waits [`IDLE_GRACE`] (parked, with a
    /// timeout), and only then works, in small steps (four stacks or 512 G structs),
    /// stopping as soon as `startm` hands it a P (and, as the timer sleeper, firing due
    /// timers between steps). Handed a P, during the grace or the work, it drops the claim;
    /// the next M to go idle takes the job over. Returns when to go on (the claim still
    /// held), or None once done (claim dropped).
    ///
    /// No memory is stranded while the runtime is idle. Memory to give back is put on the
    /// global lists under their locks, by an M holding a P (which goes idle later, then
    /// claims the job or finds it claimed) or by a thread outside the runtime (which then
    /// calls `request_release`). The releaser drops its claim and *then* looks at the lists
    /// under their locks (`memory_pending`), going on if anything is left. Whoever added
    /// memory either took the list lock before that look (so the look sees the memory) or
    /// after it (so the claim's release happens before the adder's later check of
    /// `releasing`, which it then sees false, and before the idling M's claim, which then
    /// succeeds). `request_release` reads `npidle` after its push in the same way: if it
    /// reads fewer than all P's idle, the M whose idling completes the set takes the list
    /// lock after the push and sees it.
    fn release_global_memory(&self, timer_sleeper: bool) -> Option<Instant> {
        let s = self.sched;
        let mut freed = 0;
        if !self.release_steps(timer_sleeper, &mut freed) {
            // Handed a P: `stopm` sees it next and drops the claim.
            return Some(Instant::now());
        }
        if freed >= MALLOC_TRIM_AFTER {
            trim_malloc(s);
        }
        // Relaxed claim and release: what they guard (the global lists) is under locks, and
        // the argument above rests on those locks' order, not on these atomics'.
        s.releasing.store(false, Ordering::Relaxed);
        if s.memory_pending() && !s.releasing.swap(true, Ordering::Relaxed) {
            // More came while we worked: go on at once (the runtime is still idle).
            return Some(Instant::now());
        }
        None
    }

    /// Claims the job of giving memory back, to start after [`IDLE_GRACE`]; None if
    /// another M holds it.
    fn claim_release(&self) -> Option<Instant> {
        // Relaxed: see `release_global_memory`.
        (!self.sched.releasing.swap(true, Ordering::Relaxed)).then(|| Instant::now() + IDLE_GRACE)
    }

    /// Gives memory back in small steps until none is left (true) or this M is handed a P
    /// (false). Adds the G structs freed to `freed`.
    fn release_steps(&self, timer_sleeper: bool, freed: &mut usize) -> bool {
        let s = self.sched;
        loop {
            if self.note.nextp.load(Ordering::Relaxed) != NO_P {
                return false;
            }
            if timer_sleeper {
                s.timers.run_due();
                s.netpoll_now();
            }
            let scrubbed = stack::scrub_all(SCRUB_STEP);
            let n = s.trim_gfree(GFREE_KEEP_IDLE, TRIM_STEP);
            *freed += n;
            if scrubbed == 0 && n == 0 {
                return true;
            }
        }
    }

    /// Parks this M until `startm` hands it a P.
    ///
    /// The first idle M becomes the timer sleeper: it sleeps until the next timer, fires the
    /// due ones (what they wake goes to the global queue, and `wakep` hands a P to an M,
    /// perhaps this one) and sleeps again.
    fn stopm(&mut self) {
        let s = self.sched;
        lock(&s.idle).midle.push(self.note.clone());
        let timer_sleeper = s.timers.claim_sleeper();
        // While this M holds the claim to give memory back: when it starts.
        let mut release_at = self.claim_release();
        loop {
            // How long to sleep: until the next timer (as the timer sleeper) or the start of
            // the memory release, whichever comes first.
            let wait = || {
                let mut wait = if timer_sleeper {
                    s.timers.until_next()
                } else {
                    None
                };
                if let Some(t) = release_at {
                    let d = t.saturating_duration_since(Instant::now());
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                }
                wait
            };
            match crate::net::poller_if_init() {
                // The timer sleeper sleeps in the poller once there is one: what becomes
                // ready is queued globally (this M holds no P) and an M woken for it.
                Some(pl) if timer_sleeper => {
                    self.note.polling.store(true, Ordering::Relaxed);
                    let mut batch = Vec::new();
                    pl.sleep(
                        wait,
                        || self.note.nextp.load(Ordering::Relaxed) != NO_P,
                        &mut batch,
                    );
                    self.note.polling.store(false, Ordering::Relaxed);
                    s.inject(batch);
                }
                _ => match wait() {
                    Some(d) if d.is_zero() => {}
                    Some(d) => std::thread::park_timeout(d),
                    None => std::thread::park(),
                },
            }
            // Acquire: pairs with the Release store in `startm`; after it we own the P.
            let pid = self.note.nextp.swap(NO_P, Ordering::Acquire);
            if pid != NO_P {
                if timer_sleeper {
                    s.timers.release_sleeper();
                }
                if release_at.is_some() {
                    // Busy again: the next M to go idle takes the job over (see
                    // "Giving memory back").
                    s.releasing.store(false, Ordering::Relaxed);
                }
                self.p = pid;
                self.spinning = self.note.spinning.load(Ordering::Relaxed);
                set_current_p(pid);
                return;
            }
            if timer_sleeper {
                s.timers.run_due();
            }
            // Relaxed: `request_release` set it before the `unpark` that ended our `park`.
            if self.note.release.swap(false, Ordering::Relaxed) && release_at.is_none() {
                release_at = self.claim_release();
            }
            if release_at.is_some_and(|t| Instant::now() >= t) {
                release_at = self.release_global_memory(timer_sleeper);
            }
        }
    }

    /// Binds a stack to `g` if it has none, then resumes it until it yields, parks or dies.
    fn execute(&mut self, g: GRef) {
        let s = self.sched;
        // SAFETY: we took `g` from a queue: this M owns it until it is queued again or
        // parked (see `G::owned`).
        let o = unsafe { g.owned() };
        if o.coro.is_none() {
            let st = match self.take_stack(o.class) {
                Ok(st) => st,
                Err(e) => {
                    // No stack: the G fails instead of running; the runtime goes on.
                    let msg = format!("green thread #{} could not start: {e}", g.id());
                    eprintln!("gort: {msg}");
                    g.state.store(DEAD, Ordering::Relaxed);
                    // SAFETY: we own the G and it never ran.
                    unsafe { g.fail_task(msg) };
                    return;
                }
            };
            o.coro = Some(new_coro(st, g.as_ptr()));
        }
        set_current_g(g.as_ptr());
        // Cleared when `g` leaves this M, whichever way it leaves.
        let _clear = ClearCurrentG;
        loop {
            let p = self.p();
            // SAFETY: this M holds its P.
            let l = unsafe { p.local() };
            l.schedtick = l.schedtick.wrapping_add(1);
            // For sysmon's hog report (plain stores; only the holder writes them).
            p.tick.store(l.schedtick as u64, Ordering::Relaxed);
            p.running_g.store(g.id(), Ordering::Relaxed);
            let r = o.coro.as_mut().expect("bound above").resume(());
            // A volatile read: the G's code wrote it through its own reference to the same
            // fields while it ran inside `resume`.
            // SAFETY: a plain bool of the G we own, read on the thread that wrote it.
            if unsafe { ptr::read_volatile(g.moved_p.get()) } {
                // `blocking` left this M with another P, or none.
                // SAFETY: as above: owner-only, on this thread.
                unsafe { *g.moved_p.get() = false };
                self.p = current_p();
            }
            if self.p != NO_P {
                self.p().running_g.store(0, Ordering::Relaxed);
            }
            match r {
                CoroutineResult::Yield(Suspend::NoP) => {
                    // The G left `blocking` and no P was free: it waits in the global
                    // queue for an M with a P, and this M, without one, goes to sleep
                    // (`schedule`). Do not touch the G after the push.
                    s.injector.push(g);
                    s.wakep(true);
                    return;
                }
                CoroutineResult::Yield(Suspend::Yield) => {
                    let p = self.p();
                    // SAFETY: this M holds its P.
                    if unsafe { p.local() }.schedtick % GLOBAL_TICK == 0 {
                        // `find_runnable`'s fairness look, which the fast path below would
                        // otherwise skip for as long as the G keeps yielding: due timers
                        // and ready sockets. Without it a G spinning on `yield_now` until a
                        // sleeping G (or one waiting on a socket) sets a flag waits forever
                        // on a single P: what wakes the other G never runs.
                        s.timers.run_due();
                        s.netpoll_now();
                    }
                    // Fast path: nothing else is runnable here or globally, so the G would
                    // come straight back out of the queue: resume it without the round trip.
                    // (Work on other P's is theirs to run; stealing is for idle M's.)
                    // (The owner's `Worker::is_empty`: the `Stealer`'s issues a SeqCst fence.)
                    // SAFETY: this M holds its P.
                    let (q, sq) = unsafe { (p.runq(), p.spawnq()) };
                    if p.runnext.load(Ordering::Relaxed).is_null()
                        && q.is_empty()
                        && sq.is_empty()
                        && s.global_empty()
                    {
                        continue;
                    }
                    // SAFETY: this M holds its P.
                    unsafe { s.runqput(p, g, false) };
                    return;
                }
                CoroutineResult::Yield(Suspend::Park) => {
                    // The G is off its stack: decide its fate here, never on the G's side
                    // (`protocol::park_word::commit`, model-checked in tests/loom.rs).
                    if crate::protocol::park_word::commit(&g.state) {
                        // Parked. Our reference stays with the G ("a parked G owns one
                        // reference to itself"): the `unpark` that moves it back to ACTIVE
                        // takes that very reference to queue it. So a parked G is never
                        // freed under a waker that holds only its address, and its count
                        // never drops to zero and back. Do not touch the G after this.
                        let _ = g.into_raw();
                        let p = self.p();
                        // Owner-only counter (see P).
                        p.parked
                            .store(p.parked.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        return;
                    }
                    // The wake-up arrived during the switch (the word is ACTIVE again): run
                    // it again at once.
                    continue;
                }
                CoroutineResult::Return(()) => {
                    g.state.store(DEAD, Ordering::Relaxed);
                    let coro = o.coro.take().expect("a finished G has its coroutine");
                    let st = coro.into_stack();
                    self.put_stack(st);
                    // Our reference goes; the last one recycles the G (`free_g`).
                    drop(g);
                    return;
                }
            }
        }
    }

    fn take_stack(&mut self, class: &'static StackClass) -> std::io::Result<GStack> {
        if !ptr::eq(class, self.sched.stacks) {
            return class.alloc();
        }
        // SAFETY: this M holds its P.
        let l = unsafe { self.p().local() };
        let st = match l.stacks.pop() {
            Some(st) => Some(st),
            None => {
                class.take_cached(STACK_CACHE_CAP / 2, &mut l.stacks);
                l.stacks.pop()
            }
        };
        self.p()
            .stacks_cached
            .store(l.stacks.len(), Ordering::Relaxed);
        match st {
            Some(st) => Ok(st),
            None => class.alloc(),
        }
    }

    fn put_stack(&mut self, mut st: GStack) {
        st.dirty = true;
        if st.went_deep() {
            // Past the P's cache, to be scrubbed (and its band filled again) before it is
            // handed out, so that the next G neither inherits the deep pages unseen nor
            // queues itself for the shrinker because of them.
            st.class().free_deep(st);
            return;
        }
        if !ptr::eq(st.class(), self.sched.stacks) {
            st.class().free(st);
            return;
        }
        // SAFETY: this M holds its P.
        let l = unsafe { self.p().local() };
        if l.stacks.len() >= STACK_CACHE_CAP {
            // Oldest half to the global lists.
            let half: Vec<GStack> = l.stacks.drain(..STACK_CACHE_CAP / 2).collect();
            self.sched.stacks.free_many(half.into_iter());
        }
        l.stacks.push(st);
        self.p()
            .stacks_cached
            .store(l.stacks.len(), Ordering::Relaxed);
    }
}

/// Raises the soft limit on open files to the hard limit (Go does the same since 1.19): a
/// server with a green thread per connection needs an fd per connection, and the usual soft
/// limit of 1,024 is far below what the machine allows. `GORT_RAISE_NOFILE=0` turns it off.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct; failure leaves the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// After freeing this many G structs in one go, ask the allocator to give its free pages
/// back too: a burst's G structs are small blocks spread over the allocator's heaps, which
/// glibc's `free` does not return to the kernel by itself (a million freed G's left about
/// 250 MiB resident).
const MALLOC_TRIM_AFTER: usize = 4096;

/// Returns the C allocator's free pages to the kernel, where the allocator has a call for it
/// (glibc's `malloc_trim`); elsewhere a no-op (musl's allocator returns them by itself).
///
/// The call takes milliseconds after a burst (11 ms after freeing a million G structs
/// here), during which the calling thread notices nothing: not a P handed to it, not a due
/// timer. So it runs on a short-lived thread of its own (counted under `GORT_MAXTHREADS`),
/// at most one at a time, and the idle M that asked goes back to watching for work. If no
/// thread can be had, the trim is skipped (the memory stays with the allocator, which
/// reuses it for the next burst).
fn trim_malloc(s: &'static Sched) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static TRIMMING: AtomicBool = AtomicBool::new(false);
        // Relaxed: only "one at a time" rides on this flag; nothing is published through it.
        if TRIMMING.swap(true, Ordering::Relaxed) {
            return;
        }
        if !s.reserve_thread() {
            TRIMMING.store(false, Ordering::Relaxed);
            return;
        }
        let done = move || {
            s.nthreads.fetch_sub(1, Ordering::Relaxed);
            TRIMMING.store(false, Ordering::Relaxed);
        };
        let spawned = std::thread::Builder::new()
            .name("gort-trim".into())
            .spawn(move || {
                // SAFETY: `malloc_trim` only gives back memory the allocator holds free; any
                // thread may call it at any time.
                unsafe { libc::malloc_trim(0) };
                done();
            });
        if spawned.is_err() {
            done();
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = s;
}

/// Puts a dead, unreferenced G on the current P's free list (or the global one).
pub(crate) fn free_g(g: NonNull<G>) {
    let s = sched();
    let pid = current_p();
    if pid != NO_P {
        // SAFETY: CUR_P says this thread's M holds the P.
        let l = unsafe { s.ps[pid].local() };
        s.gfree_put(&mut l.gfree, FreeG(g));
    } else {
        ext_gfree_push(s, FreeG(g));
    }
}

/// A thread outside the runtime (no P) keeps its own small list of free G's, like a P, so
/// that a main thread spawning and joining many G's does not take the global lock twice per
/// G. What is left goes back to the global list when the thread exits.
struct ExtGFree(Vec<FreeG>);

impl Drop for ExtGFree {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        if let Some(s) = SCHED.get() {
            let mut global = lock(&s.gfree);
            global.extend(self.0.drain(..));
            s.gfree_len.store(global.len(), Ordering::Relaxed);
            drop(global);
            s.request_release();
        }
    }
}

thread_local! {
    /// Free G's of a non-M thread (only touched while that thread holds no P).
    static EXT_GFREE: std::cell::RefCell<ExtGFree> =
        const { std::cell::RefCell::new(ExtGFree(Vec::new())) };
}

/// A free G for a spawn from a thread without a P, or None to allocate one.
#[inline(never)]
fn ext_gfree_pop(s: &Sched) -> Option<NonNull<G>> {
    EXT_GFREE
        .try_with(|l| s.gfree_get(&mut l.borrow_mut().0))
        .ok()
        .flatten()
}

/// Keeps a dead G freed on a thread without a P.
#[inline(never)]
fn ext_gfree_push(s: &Sched, g: FreeG) {
    let mut g = Some(g);
    // `try_with` fails only while the thread's locals are being destroyed: then the G goes
    // to the global list directly.
    let _ = EXT_GFREE.try_with(|l| s.gfree_put(&mut l.borrow_mut().0, g.take().unwrap()));
    if let Some(g) = g {
        let mut global = lock(&s.gfree);
        if global.len() < GFREE_GLOBAL_CAP {
            global.push_back(g);
            s.gfree_len.store(global.len(), Ordering::Relaxed);
        } else {
            drop(global);
            // SAFETY: on no list, no references.
            unsafe { G::dealloc(g.0) };
        }
    }
    s.request_release();
}

/// The oldest G reachable through `st` (a queue's front, where thieves take from), if any.
fn oldest(st: &Stealer<GRef>) -> Option<GRef> {
    loop {
        match st.steal() {
            Steal::Success(g) => return Some(g),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// How long a thief lets a victim's `runnext` sit before taking it (Go's usleep(3)).
const RUNNEXT_GRACE: std::time::Duration = std::time::Duration::from_micros(3);

/// Takes a victim's `runnext`, but only if it stays there for [`RUNNEXT_GRACE`]: the G was
/// just readied by the G running on that P, which usually blocks right away and lets its
/// own M run it, far more cheaply than a move to another thread (Go's runqgrab does the
/// same). Taking it at once makes every spawn-then-join bounce across OS threads.
fn steal_runnext(victim: &P) -> Option<GRef> {
    let seen = victim.runnext.load(Ordering::Relaxed);
    if seen.is_null() {
        return None;
    }
    let start = std::time::Instant::now();
    while start.elapsed() < RUNNEXT_GRACE {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
        if victim.runnext.load(Ordering::Relaxed) != seen {
            return None;
        }
    }
    // Acquire: pairs with the owner's AcqRel swap that put it there. Only the very G we
    // waited on is taken.
    match victim.runnext.compare_exchange(
        seen,
        ptr::null_mut(),
        Ordering::Acquire,
        Ordering::Relaxed,
    ) {
        // SAFETY: from `GRef::into_raw`; the exchange made us its owner.
        Ok(g) => Some(unsafe { GRef::from_raw(g) }),
        Err(_) => None,
    }
}

/// Resets the thread's current G when dropped.
struct ClearCurrentG;

impl Drop for ClearCurrentG {
    fn drop(&mut self) {
        set_current_g(ptr::null());
    }
}

/// Creates the coroutine of `g` on `st`. The entry frame records the yielder in the G, then
/// runs the G's task.
pub(crate) fn new_coro(st: GStack, g: *const G) -> Coro {
    // SAFETY: the caller owns `g` (spawner before publishing, or the executing M).
    unsafe { (*g).owned() }.stack_lo = st.guard().0;
    let gp = g as usize;
    Coro::with_stack(st, move |y, ()| {
        let g = gp as *const G;
        // SAFETY: the G is alive while its coroutine runs (the running M holds a GRef),
        // and the G's own code owns its fields while it runs; this is its first run.
        unsafe {
            (*g).owned().yielder = y as *const _;
            (*g).run_task();
        }
    })
}

/// Suspends the running G with `why`. Returns when an M resumes it.
///
/// # Safety
/// `g` is the G running on this thread (from `current_g`, non-null).
pub(crate) unsafe fn suspend(g: *const G, why: Suspend) {
    // SAFETY: the G's own code owns its fields while it runs; the yielder was set by the
    // coroutine's entry frame and lives as long as the coroutine.
    unsafe {
        if why == Suspend::Park {
            // The bound of the live stack for the shrinker (`shrink.rs`): below this point
            // only the switch's own few words will be pushed. (Also where the poller
            // prefetches the stack from, `Poller::prefetch`.)
            (*g).park_sp
                .store(crate::shrink::stack_pointer(), Ordering::Relaxed);
        }
        let y = (*g).owned().yielder;
        (*y).suspend(why);
    }
}

/// The P's for tests and introspection: count.
pub(crate) fn procs() -> usize {
    sched().procs
}

#[cfg(test)]
mod tests {
    use super::gcd;

    #[test]
    fn coprime_strides() {
        assert_eq!(gcd(12, 8), 4);
        assert_eq!(gcd(7, 3), 1);
    }
}
