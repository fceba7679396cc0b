//! gort-pool: an ants-style pool of reusable green threads.
//!
//! A [`Pool`] has a bounded capacity of *workers*: long-lived green threads that run one
//! submitted task after another, so their stacks and structs are reused instead of spawned
//! afresh. A submitted task goes to an idle worker if there is one (the most recently idled
//! first: idle workers sit on a FILO stack, or in a FIFO ring with `pre_alloc`), else to a new
//! worker if the pool is below capacity, else the submitter waits for a worker to come back
//! (or, in non-blocking mode, gets [`PoolError::Overload`] at once). Idle workers older than
//! the expiry are retired by a scavenger green thread. Go's `ants` is the reference.
//!
//! Works the same whether the submitter is a green thread or a plain OS thread.
//!
//! # Examples
//!
//! ```
//! use gort_pool::Pool;
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// `release_timeout`: running tasks did not all finish in time.
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
            PoolError::Timeout => "timed out waiting for the pool's running tasks",
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

    /// `wait`, for at most `timeout`: `None` if the state is still `WAITING` then.
    fn wait_for(&self, timeout: Duration) -> Option<u8> {
        if gort_runtime::is_green_thread() {
            // A green thread first lets the G's queued behind it run: usually one of them
            // is a worker that finishes and takes our task, and a yield costs less than a
            // timer.
            for _ in 0..BRIEF_YIELDS {
                // Acquire: pairs with the Release store in `settle`.
                let s = self.state.load(Ordering::Acquire);
                if s != WAITING {
                    return Some(s);
                }
                gort_runtime::yield_now();
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            // Acquire: pairs with the Release store in `settle`.
            let s = self.state.load(Ordering::Acquire);
            if s != WAITING {
                return Some(s);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            gort_runtime::park_timeout(deadline - now);
        }
    }

    /// Gives the idle worker of this slot its next task, or `None`: exit. The caller took
    /// the slot off the idle list.
    fn hand(&self, task: Option<Task>) {
        let state = if task.is_some() { TASK } else { EXIT };
        // SAFETY: taken off the idle list by the caller, so it is the cell's one user.
        unsafe { *self.task() = task };
        self.settle(state);
        // The slot is shared (`Arc`): alive after `settle`.
        self.waiter.unpark();
    }

    /// The worker's side of `hand`: waits for the next task (`None`: exit).
    fn next_task(&self) -> Option<Task> {
        let s = self.wait();
        // Relaxed: the next `hand` comes after the worker is back on the idle list, and the
        // pool lock orders the two.
        self.state.store(WAITING, Ordering::Relaxed);
        if s == TASK {
            // SAFETY: `hand` is done with the cell (we saw its `settle`) and will not touch
            // it again until the slot is back on the idle list.
            unsafe { self.task() }.take()
        } else {
            None
        }
    }
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
}

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

    /// Takes a waiting submitter's mailbox off the queue and gives its task back; `None` if
    /// it is no longer queued (a worker or `release` has settled it, or is about to).
    fn unqueue(&self, waiter: &Mailbox) -> Option<Task> {
        let mut st = self.lock();
        let i = st.waiters.iter().position(|w| std::ptr::eq(w.0, waiter))?;
        st.waiters.remove(i);
        self.set_waiting(&st);
        drop(st);
        // SAFETY: unqueued by us under the pool lock, so no worker can reach the mailbox any
        // more: the caller, its owner, is its one user.
        let task = unsafe { waiter.task() }.take();
        Some(task.expect("an unserved waiter has its task"))
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
        self.submit_task(Task::new(task))
    }

    fn submit_task(&self, task: Task) -> Result<(), PoolError> {
        let inner = &*self.inner;
        let mut soft = true;
        let mut task = task;
        loop {
            let mut st = inner.lock();
            if st.closed {
                return Err(PoolError::Closed);
            }
            if let Some(idler) = st.idle.pop() {
                drop(st);
                idler.slot.hand(Some(task));
                return Ok(());
            }
            let room = inner.max_blocking == 0 || st.waiters.len() < inner.max_blocking;
            let below_cap = st.running < inner.cap.load(Ordering::Relaxed);
            // Below capacity, a new worker adds parallelism only if a P is free to run it:
            // with every P busy it would queue behind the others, and a submitter faster
            // than the tasks would start one per task up to the capacity (50,000 workers
            // for sub-microsecond tasks, each a stack). Then wait briefly for a worker to
            // come back instead: Go's scheduler makes the same call for its M's (no new
            // one while every P is busy). Briefly: below capacity a submit must never
            // depend on other tasks finishing, as one of them may be waiting for this one.
            let wait_briefly = below_cap
                && soft
                && room
                && !inner.nonblocking
                && st.running > 0
                && gort_runtime::idle_procs() == 0;
            if below_cap && !wait_briefly {
                let n = st.running + 1;
                st.set_running(inner, n);
                drop(st);
                start_worker(&self.inner, task);
                return Ok(());
            }
            if inner.nonblocking || !room {
                return Err(PoolError::Overload);
            }
            // Wait for a worker to take the task from us.
            let waiter = Mailbox::new(Some(task));
            st.waiters.push_back(WaiterPtr(&waiter));
            inner.set_waiting(&st);
            drop(st);
            if !gort_runtime::is_green_thread() {
                // An OS thread's park and unpark are system calls, each dearer than a
                // task; with the pool busy, a worker usually comes free within
                // microseconds.
                spin_while_waiting(&waiter.state);
            }
            let outcome = match wait_briefly.then(|| waiter.wait_for(BRIEF_WAIT)) {
                Some(Some(s)) => s,
                // No worker came back in time: take the task back, unless one took it just
                // now, and start a worker for it after all.
                Some(None) => match inner.unqueue(&waiter) {
                    Some(t) => {
                        task = t;
                        soft = false;
                        continue;
                    }
                    None => waiter.wait(),
                },
                None => waiter.wait(),
            };
            return match outcome {
                TAKEN => Ok(()),
                // Closed: the task is dropped with the mailbox, unrun.
                _ => Err(PoolError::Closed),
            };
        }
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
            start_worker(&self.inner, task);
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

/// How long a submitter below capacity waits for a worker to come back, when every P is
/// busy, before it starts a new worker anyway (see `submit_task`).
const BRIEF_WAIT: Duration = Duration::from_micros(100);
/// How many times a green-thread submitter yields, in that wait, before it parks.
const BRIEF_YIELDS: u32 = 8;

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
fn start_worker(inner: &Arc<Inner>, first: Task) {
    let inner = inner.clone();
    drop(gort_runtime::go!(move || worker_loop(&inner, first)));
}

/// A worker's life: run a task; then take the task of a waiting submitter if there is one,
/// else go back on the idle list and wait for the next.
fn worker_loop(inner: &Inner, first: Task) {
    let slot = Arc::new(Mailbox::new(None));
    let mut task = first;
    loop {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task.run())) {
            inner.handle_panic(payload);
        }
        let mut st = inner.lock();
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
            task = next;
            continue;
        }
        st.idle.push(Idler {
            slot: slot.clone(),
            since: inner.epoch.load(Ordering::Relaxed),
        });
        drop(st);
        match slot.next_task() {
            Some(t) => task = t,
            // Retired (expiry, shrink, release): the retirer has counted us out.
            None => return,
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
/// use gort_pool::PoolWithFunc;
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
