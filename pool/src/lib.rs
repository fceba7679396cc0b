//! gort-pool: an ants-style pool of reusable green threads.
//!
//! A [`Pool`] has a bounded capacity of *workers*: long-lived green threads that run one
//! submitted task after another, so their stacks and structs are reused instead of spawned
//! afresh. Below capacity, a submitted task goes to the *backlog* (a FIFO queue that busy
//! workers drain after each task, without parking in between) when a worker will look at it
//! soon anyway; else to an idle worker if there is one (the most recently idled first: idle
//! workers sit on a FILO stack, or in a FIFO ring with `pre_alloc`), else to a new worker. At
//! capacity, the submitter waits for a worker to come back (or, in non-blocking mode, gets
//! [`PoolError::Overload`] at once), as in Go's `ants`, the reference. Tasks in the backlog
//! count against the capacity ([`Pool::queued`]), and a watchdog green thread hands them to
//! new workers if every busy worker blocks for a millisecond, so a task never waits on
//! other tasks finishing while the pool is below capacity. Idle workers older than the expiry
//! are retired by a scavenger green thread.
//!
//! Works the same whether the submitter is a green thread or a plain OS thread.
//!
//! # Examples
//!
//! ```
//! # mod gort { pub mod pool { pub use gort_pool::*; } pub use gort_runtime::*; }
//! use gort::pool::Pool;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let pool = Pool::new(4).unwrap();
//! let n = Arc::new(AtomicUsize::new(0));
//! for _ in 0..100 {
//!     let n = n.clone();
//!     pool.submit(move || { n.fetch_add(1, Ordering::SeqCst); }).unwrap();
//! }
//! pool.release_timeout(std::time::Duration::from_secs(10)).unwrap();
//! assert_eq!(n.load(Ordering::SeqCst), 100);
//! ```
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

use std::any::Any;
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal};
use gort_runtime::sync::{Condvar, Mutex};
use gort_runtime::{park, Unparker};
use std::sync::{Mutex as StdMutex, MutexGuard};

mod task;

use task::Task;

/// What the panic handler receives: the payload of a task's panic.
pub type PanicPayload = Box<dyn Any + Send + 'static>;

type PanicHandler = Arc<dyn Fn(PanicPayload) + Send + Sync + 'static>;

/// Why a pool operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// `submit` found no worker: the pool is at capacity and either non-blocking, or already
    /// has `max_blocking_tasks` submitters waiting.
    Overload,
    /// The pool was released (`release`/`release_timeout`) and not rebooted.
    Closed,
    /// `release_timeout`: running tasks did not all finish in time; `submit_timeout`: no
    /// worker took the task in time.
    Timeout,
    /// A capacity of zero was asked for (`Pool::new(0)`, `capacity(0)`, `tune(0)`); an
    /// unlimited pool is `Pool::builder().unlimited()`.
    InvalidCapacity,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolError::Overload => "gort pool is overloaded: no worker free and no room to wait",
            PoolError::Closed => "gort pool is closed",
            PoolError::Timeout => "timed out (waiting for a worker, or for the running tasks)",
            PoolError::InvalidCapacity => {
                "invalid pool capacity: 0 (use the builder's unlimited() for no limit)"
            }
        })
    }
}

impl std::error::Error for PoolError {}

/// The state every [`Mailbox`] starts in, and leaves once.
const WAITING: u8 = 0;
/// An idle worker's mailbox: a task is in the cell / the worker must exit.
const TASK: u8 = 1;
const EXIT: u8 = 2;
/// A waiting submitter's mailbox: a worker took the task / the pool closed (task unrun).
const TAKEN: u8 = 3;
const CLOSED: u8 = 4;
/// An idle worker's mailbox: no task, but look at the backlog (see `Backlog`).
const LOOK: u8 = 5;

/// A one-task rendezvous with a waiting green thread (or OS thread): a state that leaves
/// `WAITING` once, a task cell, and the waiter's unparker. Two uses:
///
/// - an idle worker's slot, shared by the worker and the idle list: whoever takes the
///   worker off the list puts a task in and settles it `TASK` (or `EXIT`) (`hand`);
/// - a waiting submitter's record, on its stack: a worker takes the task out and settles it
///   `TAKEN`, or `release` settles it `CLOSED` (`serve_waiter`, `Pool::release`).
struct Mailbox {
    state: AtomicU8,
    task: UnsafeCell<Option<Task>>,
    /// The green thread (or thread) waiting on `state`.
    waiter: Unparker,
}

// SAFETY: `task` has one user at a time. While the state is `WAITING` only the party that
// took the mailbox under the pool lock (off the idle list, or out of the waiter queue)
// touches it, and publishes what it did with the Release store in `settle`; after that, only
// the waiter does, having seen that store with the Acquire load in `wait`.
unsafe impl Sync for Mailbox {}

impl Mailbox {
    /// A mailbox waited on by the caller.
    fn new(task: Option<Task>) -> Mailbox {
        Mailbox {
            state: AtomicU8::new(WAITING),
            task: UnsafeCell::new(task),
            waiter: Unparker::current(),
        }
    }

    /// The task cell.
    ///
    /// # Safety
    /// The caller is its one user now (see the `Sync` impl).
    #[allow(clippy::mut_from_ref)]
    unsafe fn task(&self) -> &mut Option<Task> {
        // SAFETY: one user, per the caller.
        unsafe { &mut *self.task.get() }
    }

    /// Publishes the caller's change to the task cell and the outcome; the waiter may
    /// return (and a stack mailbox vanish) from here on. The caller then unparks the waiter
    /// (through a clone of `waiter` taken before, if the mailbox may vanish).
    fn settle(&self, state: u8) {
        // Release: pairs with the Acquire load in `wait`.
        self.state.store(state, Ordering::Release);
    }

    /// The waiter's side: parks until the state leaves `WAITING` and returns it. (Parks
    /// may return spuriously, e.g. for a token left by a task's own wake-ups: re-checked.)
    fn wait(&self) -> u8 {
        loop {
            // Acquire: pairs with the Release store in `settle`.
            let s = self.state.load(Ordering::Acquire);
            if s != WAITING {
                return s;
            }
            park();
        }
    }

    /// Gives the idle worker of this slot its next task, or `None`: exit. The caller took
    /// the slot off the idle list.
    fn hand(&self, task: Option<Task>) {
        let state = if task.is_some() { TASK } else { EXIT };
        self.wake(state, task);
    }

    /// Wakes the idle worker of this slot to look at the backlog. The caller took the slot
    /// off the idle list.
    fn look(&self) {
        self.wake(LOOK, None);
    }

    fn wake(&self, state: u8, task: Option<Task>) {
        // SAFETY: taken off the idle list by the caller, so it is the cell's one user.
        unsafe { *self.task() = task };
        self.settle(state);
        // The slot is shared (`Arc`): alive after `settle`.
        self.waiter.unpark();
    }

    /// `wait` until `deadline`: `None` if the state is still `WAITING` then.
    ///
    /// A wait whose deadline passed before it could park (a nanosecond's timeout) yields
    /// once and looks again before it gives up, as the runtime's own timed waits do: a
    /// submitter retrying such submits would otherwise hold its P, and the worker it waits
    /// for, queued behind it, would never finish.
    fn wait_until(&self, deadline: Instant) -> Option<u8> {
        let mut gave_way = false;
        loop {
            // Acquire: pairs with the Release store in `settle`.
            let s = self.state.load(Ordering::Acquire);
            if s != WAITING {
                return Some(s);
            }
            let now = Instant::now();
            if now >= deadline {
                if gave_way {
                    return None;
                }
                gave_way = true;
                gort_runtime::yield_now();
                continue;
            }
            gort_runtime::park_timeout(deadline - now);
            gave_way = true;
        }
    }

    /// The worker's side of `hand` and `look`: waits to be woken.
    fn next(&self) -> Next {
        let s = self.wait();
        // Relaxed: the next `hand` comes after the worker is back on the idle list, and the
        // pool lock orders the two.
        self.state.store(WAITING, Ordering::Relaxed);
        match s {
            // SAFETY: `hand` is done with the cell (we saw its `settle`) and will not touch
            // it again until the slot is back on the idle list.
            TASK => Next::Run(unsafe { self.task() }.take().expect("handed a task")),
            LOOK => Next::Look,
            _ => Next::Exit,
        }
    }
}

/// What woke an idle worker.
enum Next {
    Run(Task),
    Look,
    Exit,
}

/// An idle worker on the idle list.
struct Idler {
    slot: Arc<Mailbox>,
    /// The scavenger's epoch when it went idle (for expiry).
    since: u64,
}

/// Idle workers: a FILO stack (default) or a FIFO ring (`pre_alloc`). Either way the
/// oldest sit at the front, so expiry takes a prefix.
enum Idle {
    Stack(Vec<Idler>),
    Ring(VecDeque<Idler>),
}

impl Idle {
    fn pop(&mut self) -> Option<Idler> {
        match self {
            Idle::Stack(v) => v.pop(),
            Idle::Ring(q) => q.pop_front(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Idle::Stack(v) => v.len(),
            Idle::Ring(q) => q.len(),
        }
    }
    fn push(&mut self, w: Idler) {
        match self {
            Idle::Stack(v) => v.push(w),
            Idle::Ring(q) => q.push_back(w),
        }
    }
    /// Takes the workers idle since an epoch before `cutoff` (the oldest ones).
    fn take_expired(&mut self, cutoff: u64) -> Vec<Idler> {
        match self {
            Idle::Stack(v) => {
                let n = v.iter().take_while(|w| w.since < cutoff).count();
                v.drain(..n).collect()
            }
            Idle::Ring(q) => {
                let n = q.iter().take_while(|w| w.since < cutoff).count();
                q.drain(..n).collect()
            }
        }
    }
    fn take_all(&mut self) -> Vec<Idler> {
        match self {
            Idle::Stack(v) => std::mem::take(v),
            Idle::Ring(q) => q.drain(..).collect(),
        }
    }
}

/// A waiting submitter's mailbox, queued. It stays alive while queued: its submitter does
/// not return before its state leaves `WAITING`, which only a holder of the pool lock sets,
/// after unqueueing it.
struct WaiterPtr(*const Mailbox);

// SAFETY: the mailbox it points to is `Sync` and outlives its place in the queue.
unsafe impl Send for WaiterPtr {}

/// Takes the task of the first waiting submitter and releases the submitter; returns the
/// task and the submitter's unparker, to be used once the pool lock is dropped.
fn serve_waiter(st: &mut State) -> Option<(Task, Unparker)> {
    let WaiterPtr(w) = st.waiters.pop_front()?;
    // SAFETY: a queued waiter is alive (see `WaiterPtr`); its task is touched only by the
    // holder of the pool lock that unqueues it, which is us.
    let w = unsafe { &*w };
    // SAFETY: as above.
    let task = unsafe { w.task() }.take().expect("a waiter has its task");
    let submitter = w.waiter.clone();
    // The waiter may be gone after this: not touched again.
    w.settle(TAKEN);
    Some((task, submitter))
}

struct State {
    idle: Idle,
    /// Workers alive: running a task or idle.
    running: usize,
    /// Submitters waiting for a worker, oldest first.
    waiters: VecDeque<WaiterPtr>,
    closed: bool,
    /// Bumped by each `reboot`, so that an old scavenger stops.
    generation: u64,
}

impl State {
    fn set_running(&mut self, inner: &Inner, n: usize) {
        self.running = n;
        inner.running.store(n, Ordering::Relaxed);
    }
}

/// The scavenger ticks this many times per expiry period.
const TICKS_PER_EXPIRY: u64 = 4;

struct Inner {
    /// `usize::MAX` for an unlimited pool.
    cap: AtomicUsize,
    /// The pool's state. A std mutex, not gort's: its sections are a few dozen
    /// instructions and never block, so a short spin beats parking, and an OS-thread
    /// submitter that loses a race must not pay a futex sleep and wake-up for it.
    state: StdMutex<State>,
    /// With `all_done`: `release_timeout` waits here for `running` to reach zero.
    done: Mutex<()>,
    /// Signalled (under `done`) when `running` reaches zero.
    all_done: Condvar,
    /// The scavenger's clock: ticks `TICKS_PER_EXPIRY` times per expiry. Idle workers are
    /// stamped with it instead of reading the system clock on every task.
    epoch: AtomicU64,
    expiry: Duration,
    purge: bool,
    nonblocking: bool,
    max_blocking: usize,
    panic_handler: Option<PanicHandler>,
    /// See `PoolBuilder::keep`.
    _keep: Option<Box<dyn Any + Send + Sync>>,
    /// Mirrors of the state's counters, readable without the lock.
    running: AtomicUsize,
    waiting: AtomicUsize,
    closed: AtomicBool,
    /// Tasks accepted while every P was busy, for busy workers to take after their task
    /// (see `Backlog`).
    backlog: Backlog,
}

/// Accepted tasks waiting in FIFO order for a busy worker to finish its task and take the
/// next one here: a push and a pop per task instead of a hand-off (a lock, a wake-up and a
/// switch into a parked worker). The pool's version of Go's global run queue, with the
/// workers as its M's. Only below capacity, and always under the pool lock, a submitter
/// pushes here when a worker will look soon anyway: one is *spinning* on it (it found it
/// empty and looks again for a while before going idle, or was woken to look), or every P
/// is busy while some worker is (a new worker could not run before a busy one is done).
/// Otherwise, or if a P is idle, it takes the spinning token and wakes an idle worker to
/// look, as Go's `wakep` wakes a spinning M; with no idle worker, it starts a new one with
/// the task instead. A spinner that finds a task passes the token on the same way while
/// tasks wait and a P is idle, so a burst spreads over as many workers as it needs. A
/// worker looks here after each task and once more under the lock before it goes idle, so
/// a task here always has a worker that will look (unless every busy worker blocks: the
/// watchdog, below).
///
/// Bounded (`BACKLOG` tasks): a submitter that finds it full waits, as at capacity, and
/// is served when a worker has drained it to half (`refill`), one wake-up per
/// `BACKLOG / 2` tasks.
///
/// The watchdog: while tasks are queued, a green thread looks every `RESCUE_TICK`; if no
/// worker took a task from here during a whole tick (every busy worker is blocked, say on
/// one of these very tasks), it starts a worker for each of them, up to the capacity. So
/// below capacity a task waits on other tasks finishing for two ticks at most, and a task
/// that waits for a task submitted after it cannot deadlock the pool.
struct Backlog {
    queue: Injector<Task>,
    /// Tasks pushed so far. Written only under the pool lock (so its cache line stays with
    /// the submitters; a take touches only the queue), after the push (SeqCst: the
    /// watchdog's Dekker pair, see `ensure_watchdog`). With the queue's length, the
    /// watchdog's measure of progress: taken = pushed - queued.
    pushed: AtomicU64,
    /// The watchdog runs (SeqCst: a Dekker pair with `pushed`, see `ensure_watchdog`).
    watchdog: AtomicBool,
    /// A worker that found the backlog empty looks again for a short while before it goes
    /// idle (`spin`); while one does, submitters push here rather than wake an idle worker.
    spinning: AtomicBool,
}

impl Backlog {
    fn new() -> Backlog {
        Backlog {
            queue: Injector::new(),
            pushed: AtomicU64::new(0),
            watchdog: AtomicBool::new(false),
            spinning: AtomicBool::new(false),
        }
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    /// Tasks taken so far (near enough: the two loads are not one snapshot).
    fn taken(&self) -> u64 {
        // SeqCst: see `ensure_watchdog`.
        let pushed = self.pushed.load(Ordering::SeqCst);
        pushed.wrapping_sub(self.queue.len() as u64)
    }

    /// Takes the spinning token (one worker spins at a time, or is on its way to).
    fn take_spin_token(&self) -> bool {
        !self.spinning.load(Ordering::Relaxed) && !self.spinning.swap(true, Ordering::Relaxed)
    }

    /// Queues `task`. Called under the pool lock.
    fn push(&self, task: Task) {
        // SeqCst: the watchdog's Dekker pair (`ensure_watchdog` reads `watchdog` after).
        self.queue.push(task);
        // SeqCst: see `ensure_watchdog`.
        self.pushed.fetch_add(1, Ordering::SeqCst);
    }

    /// The oldest task, if any. Exact under the pool lock (pushes happen under it);
    /// outside it, may miss a task being pushed right now.
    fn pop(&self) -> Option<Task> {
        // (No `is_empty` first: `steal` reads the same two indices.)
        loop {
            match self.queue.steal() {
                Steal::Success(t) => {
                    return Some(t);
                }
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }
}

impl Inner {
    /// A worker that found the backlog empty: if no other worker does, looks again for a
    /// while (yielding its P to the green threads behind it each time, one of which may be
    /// the submitter) and takes what comes. A submitter faster than one worker's idle and
    /// wake-up cycle keeps one worker busy this way instead of waking one per task.
    ///
    /// `holding`: the caller already holds the spinning token (it was woken, or started,
    /// to look at the backlog).
    fn spin(self: &Arc<Self>, holding: bool) -> Option<Task> {
        let b = &self.backlog;
        if !holding && !b.take_spin_token() {
            return None;
        }
        let mut got = None;
        for i in 0..=SPIN_ROUNDS {
            if i > 0 {
                gort_runtime::yield_now();
            }
            if b.len() > 0 {
                got = self.take_queued();
                if got.is_some() {
                    break;
                }
            }
        }
        b.spinning.store(false, Ordering::Relaxed);
        if got.is_some() {
            self.pass_token();
        }
        got
    }

    /// A worker that found work (a spinner that took a task, a new worker that runs): if
    /// more waits and a P could run another worker, wake or start one as the next spinner
    /// (Go's spinning M that finds work wakes the next one), so that a burst of tasks that
    /// block spreads over as many workers as it needs, one wake-up per worker.
    fn pass_token(self: &Arc<Self>) {
        let b = &self.backlog;
        if b.len() > 0 && gort_runtime::idle_procs() > 0 && b.take_spin_token() {
            self.wake_helper();
        }
    }

    /// Wakes an idle worker to look at the backlog with the spinning token, which the
    /// caller took; else (below capacity) starts one with the oldest task, and gives the
    /// token back.
    fn wake_helper(self: &Arc<Self>) {
        let mut st = self.lock();
        if let Some(idler) = st.idle.pop() {
            drop(st);
            idler.slot.look();
            return;
        }
        let mut first = None;
        if st.running < self.cap.load(Ordering::Relaxed) {
            first = self.backlog.pop();
            if first.is_some() {
                let n = st.running + 1;
                st.set_running(self, n);
            }
        }
        drop(st);
        if let Some(first) = first {
            // The new worker gives the token back when it runs (see `submit_task`).
            start_worker(self, first, true);
        } else {
            self.backlog.spinning.store(false, Ordering::Relaxed);
        }
    }
}

/// How many times a worker that found the backlog empty yields and looks again.
const SPIN_ROUNDS: u32 = 32;

/// The backlog's bound, and the level at which workers move waiting submitters' tasks in.
const BACKLOG: usize = 1024;
const REFILL_AT: usize = BACKLOG / 2;
/// How often the backlog's watchdog looks for a stuck backlog.
const RESCUE_TICK: Duration = Duration::from_millis(1);
/// A worker taking task after task from the backlog yields its P this often, so that other
/// green threads on its P are not held back by a long stream of tasks.
const YIELD_EVERY: u32 = 64;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No section panics while holding it; poisoning cannot happen.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes `release_timeout` (called when `running` reached zero, without the state lock).
    fn note_all_done(&self) {
        let _g = self.done.lock();
        self.all_done.notify_all();
    }

    /// A task from the backlog for a worker that finished its task; when that leaves the
    /// backlog half empty, the tasks of waiting submitters move in (and they return).
    fn take_queued(&self) -> Option<Task> {
        let t = self.backlog.pop()?;
        if self.waiting.load(Ordering::Relaxed) > 0 && self.backlog.len() <= REFILL_AT {
            self.refill();
        }
        Some(t)
    }

    /// Moves waiting submitters' tasks into the backlog, oldest first, up to its bound.
    fn refill(&self) {
        let mut served = Vec::new();
        {
            let mut st = self.lock();
            while self.backlog.len() < BACKLOG {
                match serve_waiter(&mut st) {
                    Some((task, submitter)) => {
                        self.backlog.push(task);
                        served.push(submitter);
                    }
                    None => break,
                }
            }
            self.set_waiting(&st);
        }
        for submitter in served {
            submitter.unpark();
        }
    }

    fn set_waiting(&self, st: &State) {
        self.waiting.store(st.waiters.len(), Ordering::Relaxed);
    }
}

/// An ants-style pool of reusable green threads. `Send + Sync`; share it by reference or in
/// an `Arc`.
pub struct Pool {
    inner: Arc<Inner>,
}

/// Options for a [`Pool`]; see each method for its default.
pub struct PoolBuilder {
    cap: Option<usize>,
    expiry: Duration,
    purge: bool,
    pre_alloc: bool,
    nonblocking: bool,
    max_blocking: usize,
    panic_handler: Option<PanicHandler>,
    /// Kept alive as long as the pool's workers (`PoolWithFunc`'s function).
    keep: Option<Box<dyn Any + Send + Sync>>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            cap: None,
            expiry: Duration::from_secs(1),
            purge: true,
            pre_alloc: false,
            nonblocking: false,
            max_blocking: 0,
            panic_handler: None,
            keep: None,
        }
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("cap", &self.cap)
            .field("expiry", &self.expiry)
            .field("purge", &self.purge)
            .field("pre_alloc", &self.pre_alloc)
            .field("nonblocking", &self.nonblocking)
            .field("max_blocking", &self.max_blocking)
            .finish()
    }
}

impl PoolBuilder {
    /// At most `n` workers (required unless `unlimited`; `0` makes `build` fail with
    /// `InvalidCapacity`).
    pub fn capacity(mut self, n: usize) -> Self {
        self.cap = Some(n);
        self
    }

    /// No limit on workers: every submit finds or starts one.
    pub fn unlimited(mut self) -> Self {
        self.cap = Some(usize::MAX);
        self
    }

    /// Idle workers older than this are retired by the scavenger (within a quarter of it
    /// more). Default: 1 s.
    pub fn expiry(mut self, d: Duration) -> Self {
        self.expiry = d;
        self
    }

    /// With `true`, idle workers are never retired (no scavenger). Default: `false`.
    pub fn disable_purge(mut self, disable: bool) -> Self {
        self.purge = !disable;
        self
    }

    /// With `true`, idle workers wait in a ring allocated up front for the whole capacity
    /// and are reused oldest first, instead of on a growing stack, newest first. Default:
    /// `false`. Not with `unlimited`.
    pub fn pre_alloc(mut self, pre: bool) -> Self {
        self.pre_alloc = pre;
        self
    }

    /// With `true`, `submit` on a full pool returns `Overload` at once instead of waiting.
    /// Default: `false`.
    pub fn nonblocking(mut self, nb: bool) -> Self {
        self.nonblocking = nb;
        self
    }

    /// At most this many submitters wait at once; more get `Overload`. `0`: no limit
    /// (the default).
    pub fn max_blocking_tasks(mut self, n: usize) -> Self {
        self.max_blocking = n;
        self
    }

    /// Called with the payload when a task panics (on the worker's green thread). Default:
    /// the panic message is printed to stderr by the panic hook, and nothing else. A handler
    /// that panics (or a payload that panics when dropped) costs nothing but a line on
    /// stderr: the worker goes on.
    pub fn panic_handler<F>(mut self, f: F) -> Self
    where
        F: Fn(PanicPayload) + Send + Sync + 'static,
    {
        self.panic_handler = Some(Arc::new(f));
        self
    }

    /// Builds the pool.
    pub fn build(self) -> Result<Pool, PoolError> {
        let cap = match self.cap {
            None | Some(0) => return Err(PoolError::InvalidCapacity),
            Some(n) => n,
        };
        let idle = if self.pre_alloc && cap != usize::MAX {
            Idle::Ring(VecDeque::with_capacity(cap))
        } else {
            Idle::Stack(Vec::new())
        };
        let pool = Pool {
            inner: Arc::new(Inner {
                cap: AtomicUsize::new(cap),
                state: StdMutex::new(State {
                    idle,
                    running: 0,
                    waiters: VecDeque::new(),
                    closed: false,
                    generation: 0,
                }),
                done: Mutex::new(()),
                all_done: Condvar::new(),
                epoch: AtomicU64::new(0),
                expiry: self.expiry,
                purge: self.purge,
                nonblocking: self.nonblocking,
                max_blocking: self.max_blocking,
                panic_handler: self.panic_handler,
                _keep: self.keep,
                running: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                backlog: Backlog::new(),
            }),
        };
        pool.start_scavenger(0);
        Ok(pool)
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("cap", &self.cap())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Pool {
    /// A pool of at most `capacity` workers, with the default options.
    pub fn new(capacity: usize) -> Result<Pool, PoolError> {
        Pool::builder().capacity(capacity).build()
    }

    /// A builder for a pool with options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Runs `task` on a worker (see the crate docs for which one, and when this waits).
    pub fn submit<F>(&self, task: F) -> Result<(), PoolError>
    where
        F: FnOnce() + Send + 'static,
    {
        self.submit_task(Task::new(task), None)
    }

    /// [`submit`](Pool::submit), waiting at most `timeout` for a worker when the pool is at
    /// capacity: `Err(PoolError::Timeout)` then, and the task is dropped unrun. (Below
    /// capacity, and for a non-blocking pool, the same as `submit`.)
    ///
    /// # Examples
    ///
    /// ```
    /// # mod gort { pub mod pool { pub use gort_pool::*; } pub use gort_runtime::*; }
    /// use gort::pool::{Pool, PoolError};
    /// use std::time::Duration;
    ///
    /// let pool = Pool::new(1).unwrap();
    /// let (tx, rx) = gort::chan::bounded::<()>(0);
    /// pool.submit(move || rx.recv().unwrap()).unwrap(); // the one worker is busy
    /// assert_eq!(pool.submit_timeout(|| (), Duration::from_millis(5)), Err(PoolError::Timeout));
    /// tx.send(()).unwrap();
    /// assert_eq!(pool.submit_timeout(|| (), Duration::from_secs(10)), Ok(()));
    /// ```
    pub fn submit_timeout<F>(&self, task: F, timeout: Duration) -> Result<(), PoolError>
    where
        F: FnOnce() + Send + 'static,
    {
        let deadline = Instant::now().checked_add(timeout);
        self.submit_task(Task::new(task), deadline)
    }

    fn submit_task(&self, task: Task, deadline: Option<Instant>) -> Result<(), PoolError> {
        let inner = &*self.inner;
        let mut st = inner.lock();
        if st.closed {
            return Err(PoolError::Closed);
        }
        let b = &inner.backlog;
        let busy = st.running - st.idle.len();
        let room = inner.max_blocking == 0 || st.waiters.len() < inner.max_blocking;
        // Tasks in the backlog count against the capacity, as the workers they will have:
        // the tasks accepted and not yet started stay within the capacity (plus the
        // waiting submitters), as in ants.
        let queued = b.len();
        let below_cap = st.running + queued < inner.cap.load(Ordering::Relaxed);
        // Below capacity, where the alternative is a hand-off or a new worker, the backlog
        // (see `Backlog`) is cheaper when a worker will look at it soon anyway.
        let mut new_with_token = false;
        if below_cap {
            let drained =
                b.spinning.load(Ordering::Relaxed) || (busy > 0 && gort_runtime::idle_procs() == 0);
            let full = queued >= BACKLOG;
            // Waits for the workers to drain a full backlog.
            let wait = full && drained && room && !inner.nonblocking;
            // Nobody drains it, or a P is idle: wake a worker (an idle one, else a new one)
            // to look, as the spinner, unless one spins already (Go's `wakep`).
            let wake = (!drained || gort_runtime::idle_procs() > 0)
                && (!full || wait)
                && b.take_spin_token();
            if wake && st.idle.len() == 0 && !full {
                // No idle worker to wake: a new one, with this task (Go's `wakep` starts an
                // M), below. It keeps the token until it runs, as Go's new M spins until it
                // has a P: a burst of submits meanwhile goes to the backlog rather than
                // starting a worker each while the first is on its way.
                new_with_token = true;
            } else {
                let helper = if wake { st.idle.pop() } else { None };
                let look = |helper: Option<Idler>| {
                    if let Some(idler) = helper {
                        idler.slot.look();
                    }
                };
                if !full && (drained || wake) {
                    b.push(task);
                    drop(st);
                    look(helper);
                    ensure_watchdog(&self.inner);
                    return Ok(());
                }
                if wait {
                    // Full, and being drained: wait for the workers to drain it to half
                    // (`refill`). A submitter faster than the tasks would otherwise start
                    // one worker per task up to the capacity (50,000 workers for
                    // sub-microsecond tasks, each a stack), none of which could run before
                    // a busy one is done. (No idle worker to wake: the token goes back.)
                    if helper.is_none() && wake {
                        b.spinning.store(false, Ordering::Relaxed);
                    }
                    return wait_for_worker(inner, st, task, deadline, || look(helper));
                }
                // (`wake` implies one of the two branches above.)
            }
        }
        if let Some(idler) = st.idle.pop() {
            drop(st);
            idler.slot.hand(Some(task));
            return Ok(());
        }
        if below_cap {
            let n = st.running + 1;
            st.set_running(inner, n);
            drop(st);
            start_worker(&self.inner, task, new_with_token);
            return Ok(());
        }
        if inner.nonblocking || !room {
            return Err(PoolError::Overload);
        }
        wait_for_worker(inner, st, task, deadline, || ())
    }

    /// Starts the scavenger of `generation` (if purging is on): it retires expired idle
    /// workers until the pool closes or is rebooted into a newer generation.
    fn start_scavenger(&self, generation: u64) {
        if !self.inner.purge {
            return;
        }
        let inner = self.inner.clone();
        drop(gort_runtime::go!(move || {
            let tick = (inner.expiry / TICKS_PER_EXPIRY as u32).max(Duration::from_millis(1));
            loop {
                gort_runtime::sleep(tick);
                let now = inner.epoch.fetch_add(1, Ordering::Relaxed) + 1;
                let expired = {
                    let mut st = inner.lock();
                    if st.closed || st.generation != generation {
                        return;
                    }
                    // Idle since epoch e means idle at least (now - e - 1) ticks.
                    let expired = match now.checked_sub(TICKS_PER_EXPIRY + 1) {
                        Some(last) => st.idle.take_expired(last + 1),
                        None => Vec::new(),
                    };
                    let n = st.running - expired.len();
                    st.set_running(&inner, n);
                    drop(st);
                    if n == 0 && !expired.is_empty() {
                        inner.note_all_done();
                    }
                    expired
                };
                retire(expired);
            }
        }));
    }

    /// Workers alive: running a task or idle.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Workers that could still be started: `cap() - running()` (for an unlimited pool,
    /// `usize::MAX`).
    pub fn free(&self) -> usize {
        let cap = self.cap();
        if cap == usize::MAX {
            return usize::MAX;
        }
        cap.saturating_sub(self.running())
    }

    /// Submitters waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Tasks accepted and waiting in the backlog for a busy worker to take them (see the
    /// crate docs). They count against the capacity, like the workers they will need.
    pub fn queued(&self) -> usize {
        self.inner.backlog.len()
    }

    /// The capacity (`usize::MAX` for an unlimited pool).
    pub fn cap(&self) -> usize {
        self.inner.cap.load(Ordering::Relaxed)
    }

    /// Whether the pool was released (and not rebooted).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Changes the capacity at run time. Growing starts workers at once for waiting
    /// submitters; shrinking retires idle workers beyond the new capacity now and busy ones
    /// as they finish their task. `0` is refused with `InvalidCapacity`.
    pub fn tune(&self, capacity: usize) -> Result<(), PoolError> {
        if capacity == 0 {
            return Err(PoolError::InvalidCapacity);
        }
        let inner = &*self.inner;
        let mut retired = Vec::new();
        let mut served = Vec::new();
        {
            let mut st = inner.lock();
            inner.cap.store(capacity, Ordering::Relaxed);
            let mut n = st.running;
            while n > capacity {
                match st.idle.pop() {
                    Some(w) => {
                        retired.push(w);
                        n -= 1;
                    }
                    None => break,
                }
            }
            // Room: start a worker for each waiting submitter that fits.
            while n < capacity {
                match serve_waiter(&mut st) {
                    Some(s) => {
                        served.push(s);
                        n += 1;
                    }
                    None => break,
                }
            }
            st.set_running(inner, n);
            inner.set_waiting(&st);
        }
        retire(retired);
        for (task, submitter) in served {
            start_worker(&self.inner, task, false);
            submitter.unpark();
        }
        Ok(())
    }

    /// Closes the pool: later submits fail with `Closed`, waiting submitters are woken
    /// with `Closed` (their task is dropped unrun), idle workers are retired, busy ones
    /// finish their task and exit.
    pub fn release(&self) {
        let inner = &*self.inner;
        let mut closed = Vec::new();
        let retired = {
            let mut st = inner.lock();
            st.closed = true;
            inner.closed.store(true, Ordering::Relaxed);
            let retired = st.idle.take_all();
            let n = st.running - retired.len();
            st.set_running(inner, n);
            while let Some(WaiterPtr(w)) = st.waiters.pop_front() {
                // SAFETY: a queued waiter is alive (see `WaiterPtr`).
                let w = unsafe { &*w };
                closed.push(w.waiter.clone());
                // `w` may be gone after this: not touched again.
                w.settle(CLOSED);
            }
            inner.set_waiting(&st);
            drop(st);
            if n == 0 {
                inner.note_all_done();
            }
            retired
        };
        for submitter in closed {
            submitter.unpark();
        }
        retire(retired);
    }

    /// `release`, then waits up to `timeout` for the running tasks to finish; `Timeout` if
    /// they did not.
    pub fn release_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.release();
        let inner = &*self.inner;
        let g = inner.done.lock();
        // `running` is written under the state lock, and whoever brings it to zero then
        // takes `done` to notify: reading it under `done` cannot miss that notification.
        let (g, r) = inner
            .all_done
            .wait_timeout_while(g, timeout, |_| inner.running.load(Ordering::Relaxed) > 0);
        drop(g);
        if r.timed_out() {
            Err(PoolError::Timeout)
        } else {
            Ok(())
        }
    }

    /// Reopens a released pool (a no-op on an open one).
    pub fn reboot(&self) {
        let generation = {
            let mut st = self.inner.lock();
            if !st.closed {
                return;
            }
            st.closed = false;
            st.generation += 1;
            self.inner.closed.store(false, Ordering::Relaxed);
            st.generation
        };
        self.start_scavenger(generation);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Like ants' Release on a pool that goes away: stop the scavenger and the idle
        // workers; tasks already running finish.
        self.release();
    }
}

/// Queues the submitter (holding the pool lock, `st`) with its task until a worker takes
/// the task (to run it, or into the backlog) or the pool closes.
/// `then` runs once the lock is dropped. With a `deadline`, gives up then: takes the
/// submitter off the queue (the task is dropped unrun) and returns `Timeout`.
fn wait_for_worker(
    inner: &Inner,
    mut st: MutexGuard<'_, State>,
    task: Task,
    deadline: Option<Instant>,
    then: impl FnOnce(),
) -> Result<(), PoolError> {
    let waiter = Mailbox::new(Some(task));
    st.waiters.push_back(WaiterPtr(&waiter));
    inner.set_waiting(&st);
    drop(st);
    then();
    if !gort_runtime::is_green_thread() {
        // An OS thread's park and unpark are system calls, each dearer than a task; with
        // the pool busy, a worker usually comes free within microseconds.
        spin_while_waiting(&waiter.state);
    }
    let outcome = match deadline {
        None => waiter.wait(),
        Some(d) => match waiter.wait_until(d) {
            Some(s) => s,
            None => {
                // Off the queue, unless a worker or `release` took us off just now.
                let mut st = inner.lock();
                if let Some(i) = st.waiters.iter().position(|w| std::ptr::eq(w.0, &waiter)) {
                    st.waiters.remove(i);
                    inner.set_waiting(&st);
                    // The task is dropped with the mailbox, unrun.
                    return Err(PoolError::Timeout);
                }
                drop(st);
                waiter.wait()
            }
        },
    };
    match outcome {
        TAKEN => Ok(()),
        // Closed: the task is dropped with the mailbox, unrun.
        _ => Err(PoolError::Closed),
    }
}

/// Starts the backlog's watchdog unless it runs. Called after a push.
fn ensure_watchdog(inner: &Arc<Inner>) {
    // SeqCst: the push, then the SeqCst increment of `pushed`, then this load; against the
    // watchdog's SeqCst store of `false`, a SeqCst fence, then its look at the queue
    // (`watchdog`): either it sees our task or we see it gone.
    if inner.backlog.watchdog.load(Ordering::SeqCst) {
        return;
    }
    if inner
        .backlog
        .watchdog
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok()
    {
        let inner = inner.clone();
        drop(gort_runtime::go!(move || watchdog(&inner)));
    }
}

/// The backlog's watchdog (see `Backlog`): runs while tasks are queued.
fn watchdog(inner: &Arc<Inner>) {
    let b = &inner.backlog;
    let mut taken = b.taken();
    loop {
        gort_runtime::sleep(RESCUE_TICK);
        if b.queue.is_empty() {
            // Empty: stop, unless a task came in meanwhile and its submitter saw us running
            // (then it started no other watchdog). SeqCst: see `ensure_watchdog`.
            b.watchdog.store(false, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if b.queue.is_empty() || b.watchdog.swap(true, Ordering::SeqCst) {
                return;
            }
        } else if b.taken() == taken {
            rescue(inner);
        }
        taken = b.taken();
    }
}

/// No worker took a task from the backlog for a whole tick (every busy worker is blocked):
/// starts a worker for each task there, up to the capacity. Tasks the pool accepted run even if it was
/// released since.
fn rescue(inner: &Arc<Inner>) {
    let mut tasks = Vec::new();
    {
        let mut st = inner.lock();
        let cap = inner.cap.load(Ordering::Relaxed);
        let mut n = st.running;
        while n < cap {
            match inner.backlog.pop() {
                Some(t) => {
                    tasks.push(t);
                    n += 1;
                }
                None => break,
            }
        }
        st.set_running(inner, n);
    }
    for t in tasks {
        start_worker(inner, t, false);
    }
}

/// How long an OS-thread submitter spins (and yields its CPU) before parking.
const SPINS: u32 = 64;
const YIELDS: u32 = 16;

fn spin_while_waiting(state: &AtomicU8) {
    for i in 0..SPINS + YIELDS {
        if state.load(Ordering::Relaxed) != WAITING {
            return;
        }
        if i < SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Tells retired workers to exit.
fn retire(workers: Vec<Idler>) {
    for w in workers {
        w.slot.hand(None);
    }
}

/// Starts a worker (already counted in `running`) with its first task.
/// With `token`: the caller took the spinning token for it; it gives it back when it runs.
fn start_worker(inner: &Arc<Inner>, first: Task, token: bool) {
    let inner = inner.clone();
    drop(gort_runtime::go!(move || worker_loop(&inner, first, token)));
}

/// A worker's life: run a task; then take the next from the backlog, else the task of a
/// waiting submitter, else go back on the idle list and wait for the next.
fn worker_loop(inner: &Arc<Inner>, first: Task, token: bool) {
    if token {
        inner.backlog.spinning.store(false, Ordering::Relaxed);
        // Running now: pass the token on if tasks wait and a P is idle (as a spinner that
        // finds work does, `Inner::spin`).
        inner.pass_token();
    }
    let slot = Arc::new(Mailbox::new(None));
    // Woken to look at the backlog, with the spinning token.
    let mut holding = false;
    let mut task = Some(first);
    let mut streak = 0u32;
    loop {
        if let Some(task) = task.take() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task.run())) {
                inner.handle_panic(payload);
            }
        }
        let next = if holding {
            holding = false;
            inner.spin(true)
        } else {
            inner.take_queued().or_else(|| inner.spin(false))
        };
        if let Some(t) = next {
            streak += 1;
            if streak % YIELD_EVERY == 0 {
                gort_runtime::yield_now();
            }
            task = Some(t);
            continue;
        }
        streak = 0;
        let mut st = inner.lock();
        // Again under the lock, exact now: submitters push under it, so nothing lands in
        // the backlog between this look and our going idle. Accepted tasks run even on a
        // released or shrunk pool.
        if let Some(t) = inner.backlog.pop() {
            drop(st);
            task = Some(t);
            continue;
        }
        if st.closed || st.running > inner.cap.load(Ordering::Relaxed) {
            // Released or shrunk: this worker goes.
            let n = st.running - 1;
            st.set_running(inner, n);
            drop(st);
            if n == 0 {
                inner.note_all_done();
            }
            return;
        }
        if let Some((next, submitter)) = serve_waiter(&mut st) {
            inner.set_waiting(&st);
            drop(st);
            submitter.unpark();
            task = Some(next);
            continue;
        }
        st.idle.push(Idler {
            slot: slot.clone(),
            since: inner.epoch.load(Ordering::Relaxed),
        });
        drop(st);
        match slot.next() {
            Next::Run(t) => task = Some(t),
            // Woken to look at the backlog, with the spinning token: the top of the loop
            // does.
            Next::Look => holding = true,
            // Retired (expiry, shrink, release): the retirer has counted us out.
            Next::Exit => return,
        }
    }
}

impl Inner {
    /// A task panicked: hand the payload to the panic handler, or drop it. Either may panic
    /// in turn (a handler that panics, a payload whose `Drop` panics); neither may cost the
    /// worker, which would leave `running` counting a worker that is gone: such a panic is
    /// reported in one line and contained.
    fn handle_panic(&self, payload: Box<dyn Any + Send>) {
        let r = catch_unwind(AssertUnwindSafe(|| match &self.panic_handler {
            Some(h) => h(payload),
            None => drop(payload),
        }));
        if let Err(again) = r {
            if self.panic_handler.is_some() {
                eprintln!("gort-pool: the panic handler panicked; the worker goes on");
            } else {
                eprintln!("gort-pool: a task's panic payload panicked on drop; the worker goes on");
            }
            // The second panic's payload may panic on drop as well: one try, then leak it.
            if let Err(third) = catch_unwind(AssertUnwindSafe(move || drop(again))) {
                std::mem::forget(third);
            }
        }
    }
}

/// The function of a `PoolWithFunc`, as its tasks carry it. It is alive whenever such a task
/// runs: tasks run only on the pool's workers, each of which holds the pool's `Inner`, which
/// keeps a reference to the function (`PoolBuilder::keep`). A task dropped unrun never
/// dereferences it.
struct FuncPtr<T>(*const (dyn Fn(T) + Send + Sync));

// SAFETY: the function is `Send + Sync`, and alive where it is used (see above).
unsafe impl<T> Send for FuncPtr<T> {}

/// A pool whose workers all run one function, fixed at build time, on the argument of each
/// `invoke` (ants' `PoolWithFunc`).
///
/// # Examples
///
/// ```
/// # mod gort { pub mod pool { pub use gort_pool::*; } pub use gort_runtime::*; }
/// use gort::pool::PoolWithFunc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// let sum = Arc::new(AtomicU64::new(0));
/// let s = sum.clone();
/// let pool = PoolWithFunc::new(8, move |x: u64| { s.fetch_add(x, Ordering::SeqCst); }).unwrap();
/// for i in 0..100 {
///     pool.invoke(i).unwrap();
/// }
/// pool.release_timeout(std::time::Duration::from_secs(10)).unwrap();
/// assert_eq!(sum.load(Ordering::SeqCst), 4950);
/// ```
pub struct PoolWithFunc<T> {
    pool: Pool,
    func: Arc<dyn Fn(T) + Send + Sync + 'static>,
}

impl<T> fmt::Debug for PoolWithFunc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolWithFunc")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<T: Send + 'static> PoolWithFunc<T> {
    /// A pool of at most `capacity` workers running `func`, with the default options.
    pub fn new<F>(capacity: usize, func: F) -> Result<PoolWithFunc<T>, PoolError>
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        PoolWithFunc::with_builder(Pool::builder().capacity(capacity), func)
    }

    /// A pool running `func`, built from `builder`'s options.
    pub fn with_builder<F>(builder: PoolBuilder, func: F) -> Result<PoolWithFunc<T>, PoolError>
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        let func: Arc<dyn Fn(T) + Send + Sync> = Arc::new(func);
        let keep = PoolBuilder {
            keep: Some(Box::new(func.clone())),
            ..builder
        };
        Ok(PoolWithFunc {
            pool: keep.build()?,
            func,
        })
    }

    /// Runs the function on `arg`, on a worker (as `Pool::submit`).
    pub fn invoke(&self, arg: T) -> Result<(), PoolError> {
        // A pointer rather than an `Arc` clone per task: a count shared by every core.
        let f = FuncPtr(Arc::as_ptr(&self.func));
        self.pool.submit(move || {
            let f = f;
            // SAFETY: see `FuncPtr`.
            unsafe { (*f.0)(arg) }
        })
    }

    /// The underlying pool: `running`, `tune`, `release`, ...
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// See [`Pool::release_timeout`].
    pub fn release_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.pool.release_timeout(timeout)
    }
}
