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
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort_runtime::chan;
use gort_runtime::sync::{Condvar, Mutex};

/// A task: what `submit` runs.
type Task = Box<dyn FnOnce() + Send + 'static>;

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

/// One worker: a green thread waiting on its own one-slot channel for tasks.
struct Worker {
    tx: chan::Sender<Option<Task>>,
    /// When it last went idle (for expiry).
    idle_since: Instant,
}

/// Idle workers: a FILO stack (default) or a FIFO ring (`pre_alloc`).
enum Idle {
    Stack(Vec<Worker>),
    Ring(VecDeque<Worker>),
}

impl Idle {
    fn pop(&mut self) -> Option<Worker> {
        match self {
            Idle::Stack(v) => v.pop(),
            Idle::Ring(q) => q.pop_front(),
        }
    }
    fn push(&mut self, w: Worker) {
        match self {
            Idle::Stack(v) => v.push(w),
            Idle::Ring(q) => q.push_back(w),
        }
    }
    /// Takes the workers idle since before `cutoff` (the oldest ones).
    fn take_expired(&mut self, cutoff: Instant) -> Vec<Worker> {
        match self {
            // The stack's bottom holds the oldest.
            Idle::Stack(v) => {
                let n = v.iter().take_while(|w| w.idle_since < cutoff).count();
                v.drain(..n).collect()
            }
            Idle::Ring(q) => {
                let n = q.iter().take_while(|w| w.idle_since < cutoff).count();
                q.drain(..n).collect()
            }
        }
    }
    fn take_all(&mut self) -> Vec<Worker> {
        match self {
            Idle::Stack(v) => std::mem::take(v),
            Idle::Ring(q) => q.drain(..).collect(),
        }
    }
}

struct State {
    idle: Idle,
    /// Workers alive: running a task or idle.
    running: usize,
    /// Submitters waiting for a worker.
    waiting: usize,
    closed: bool,
    /// Bumped by each `reboot`, so that an old scavenger stops.
    generation: u64,
}

struct Inner {
    /// `usize::MAX` for an unlimited pool.
    cap: AtomicUsize,
    state: Mutex<State>,
    /// Signalled when a worker becomes free, capacity grows, or the pool closes.
    worker_free: Condvar,
    /// Signalled when `running` reaches zero.
    all_done: Condvar,
    expiry: Duration,
    purge: bool,
    nonblocking: bool,
    max_blocking: usize,
    panic_handler: Option<PanicHandler>,
    /// Mirrors of the state's counters, readable without the lock.
    running: AtomicUsize,
    waiting: AtomicUsize,
    closed: AtomicBool,
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

    /// Idle workers older than this are retired by the scavenger. Default: 1 s.
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
    /// the panic message is printed to stderr by the panic hook, and nothing else.
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
                state: Mutex::new(State {
                    idle,
                    running: 0,
                    waiting: 0,
                    closed: false,
                    generation: 0,
                }),
                worker_free: Condvar::new(),
                all_done: Condvar::new(),
                expiry: self.expiry,
                purge: self.purge,
                nonblocking: self.nonblocking,
                max_blocking: self.max_blocking,
                panic_handler: self.panic_handler,
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
        self.submit_boxed(Box::new(task))
    }

    fn submit_boxed(&self, task: Task) -> Result<(), PoolError> {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        loop {
            if st.closed {
                return Err(PoolError::Closed);
            }
            if let Some(w) = st.idle.pop() {
                drop(st);
                // A worker's channel holds one task and its worker is waiting on it: this
                // cannot block, and cannot fail (the worker only exits after `None`).
                w.tx.send(Some(task))
                    .unwrap_or_else(|_| unreachable!("an idle worker is alive"));
                return Ok(());
            }
            if st.running < inner.cap.load(Ordering::Relaxed) {
                st.running += 1;
                inner.running.store(st.running, Ordering::Relaxed);
                drop(st);
                self.start_worker(task);
                return Ok(());
            }
            if inner.nonblocking || (inner.max_blocking != 0 && st.waiting >= inner.max_blocking) {
                return Err(PoolError::Overload);
            }
            st.waiting += 1;
            inner.waiting.store(st.waiting, Ordering::Relaxed);
            st = inner.worker_free.wait(st);
            st.waiting -= 1;
            inner.waiting.store(st.waiting, Ordering::Relaxed);
        }
    }

    fn start_worker(&self, first: Task) {
        let (tx, rx) = chan::bounded::<Option<Task>>(1);
        let inner = self.inner.clone();
        drop(gort_runtime::go!(move || worker_loop(
            &inner, first, tx, rx
        )));
    }

    /// Starts the scavenger of `generation` (if purging is on): it retires expired idle
    /// workers until the pool closes or is rebooted into a newer generation.
    fn start_scavenger(&self, generation: u64) {
        if !self.inner.purge {
            return;
        }
        let inner = self.inner.clone();
        drop(gort_runtime::go!(move || {
            let period = inner.expiry.max(Duration::from_millis(1));
            loop {
                gort_runtime::sleep(period);
                let expired = {
                    let mut st = inner.state.lock();
                    if st.closed || st.generation != generation {
                        return;
                    }
                    let cutoff = Instant::now().checked_sub(inner.expiry);
                    let expired = match cutoff {
                        Some(c) => st.idle.take_expired(c),
                        None => Vec::new(),
                    };
                    st.running -= expired.len();
                    inner.running.store(st.running, Ordering::Relaxed);
                    if !expired.is_empty() {
                        // Room for a new worker: a waiting submitter may start one.
                        inner.worker_free.notify_all();
                        if st.running == 0 {
                            inner.all_done.notify_all();
                        }
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

    /// Changes the capacity at run time. Growing lets waiting submitters start workers at
    /// once; shrinking retires idle workers beyond the new capacity now and busy ones as they
    /// finish their task. `0` is refused with `InvalidCapacity`.
    pub fn tune(&self, capacity: usize) -> Result<(), PoolError> {
        if capacity == 0 {
            return Err(PoolError::InvalidCapacity);
        }
        let inner = &*self.inner;
        let retired = {
            let mut st = inner.state.lock();
            inner.cap.store(capacity, Ordering::Relaxed);
            let mut retired = Vec::new();
            while st.running > capacity {
                match st.idle.pop() {
                    Some(w) => {
                        retired.push(w);
                        st.running -= 1;
                    }
                    None => break,
                }
            }
            inner.running.store(st.running, Ordering::Relaxed);
            inner.worker_free.notify_all();
            retired
        };
        retire(retired);
        Ok(())
    }

    /// Closes the pool: later submits fail with `Closed`, waiting submitters are woken
    /// with `Closed`, idle workers are retired, busy ones finish their task and exit.
    pub fn release(&self) {
        let inner = &*self.inner;
        let retired = {
            let mut st = inner.state.lock();
            st.closed = true;
            inner.closed.store(true, Ordering::Relaxed);
            let retired = st.idle.take_all();
            st.running -= retired.len();
            inner.running.store(st.running, Ordering::Relaxed);
            inner.worker_free.notify_all();
            if st.running == 0 {
                inner.all_done.notify_all();
            }
            retired
        };
        retire(retired);
    }

    /// `release`, then waits up to `timeout` for the running tasks to finish; `Timeout` if
    /// they did not.
    pub fn release_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.release();
        let inner = &*self.inner;
        let st = inner.state.lock();
        let (st, r) = inner
            .all_done
            .wait_timeout_while(st, timeout, |st| st.running > 0);
        drop(st);
        if r.timed_out() {
            Err(PoolError::Timeout)
        } else {
            Ok(())
        }
    }

    /// Reopens a released pool (a no-op on an open one).
    pub fn reboot(&self) {
        let generation = {
            let mut st = self.inner.state.lock();
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

/// Tells retired workers to exit.
fn retire(workers: Vec<Worker>) {
    for w in workers {
        let _ = w.tx.send(None);
    }
}

/// A worker's life: run a task, go back on the idle list, wait for the next one.
fn worker_loop(
    inner: &Inner,
    first: Task,
    tx: chan::Sender<Option<Task>>,
    rx: chan::Receiver<Option<Task>>,
) {
    let mut task = first;
    loop {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
            if let Some(h) = &inner.panic_handler {
                h(payload);
            }
        }
        {
            let mut st = inner.state.lock();
            if st.closed || st.running > inner.cap.load(Ordering::Relaxed) {
                // Released or shrunk: this worker goes.
                st.running -= 1;
                inner.running.store(st.running, Ordering::Relaxed);
                if st.running == 0 {
                    inner.all_done.notify_all();
                }
                inner.worker_free.notify_one();
                return;
            }
            st.idle.push(Worker {
                tx: tx.clone(),
                idle_since: Instant::now(),
            });
            if st.waiting > 0 {
                inner.worker_free.notify_one();
            }
        }
        match rx.recv() {
            Ok(Some(t)) => task = t,
            // Retired (expiry, shrink, release): the retirer has counted us out.
            _ => return,
        }
    }
}

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
        Ok(PoolWithFunc {
            pool: Pool::new(capacity)?,
            func: Arc::new(func),
        })
    }

    /// A pool running `func`, built from `builder`'s options.
    pub fn with_builder<F>(builder: PoolBuilder, func: F) -> Result<PoolWithFunc<T>, PoolError>
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        Ok(PoolWithFunc {
            pool: builder.build()?,
            func: Arc::new(func),
        })
    }

    /// Runs the function on `arg`, on a worker (as `Pool::submit`).
    pub fn invoke(&self, arg: T) -> Result<(), PoolError> {
        let f = self.func.clone();
        self.pool.submit(move || f(arg))
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
