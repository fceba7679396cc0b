//! Locks and friends that park green threads instead of blocking OS threads:
//! [`Mutex`], [`RwLock`], [`Condvar`], [`WaitGroup`], [`Semaphore`], [`Barrier`], [`Once`].
//!
//! Every one of them also works when the caller is a plain OS thread (it then blocks in
//! `std::thread::park`), and a guard may be held across any blocking point: the green thread
//! may resume on another OS thread and unlock there.
//!
//! # Waiting
//!
//! All of them queue a `Node` (an `Unparker` and a flag) under a short internal lock that
//! is never held across a park, then park until the flag is set. Whoever releases the
//! resource *signals* a node: sets its flag (Release) and unparks it; the waiter sees the
//! flag (Acquire) and owns what was handed over. A waiter that times out takes itself out of
//! the queue under the same lock; if it is no longer there, it was signalled first and the
//! hand-over stands.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::{Duration, Instant};

use crate::park::{park, park_deadline, Unparker};

/// One waiting green thread or OS thread.
struct Node {
    unparker: Unparker,
    /// Set (Release) by the signaller once the waiter may proceed.
    flag: AtomicBool,
    /// For `Mutex`: the lock itself was handed over (starvation mode). Written before
    /// `flag`, read after it.
    handed: AtomicBool,
}

impl Node {
    fn new() -> Arc<Node> {
        Arc::new(Node {
            unparker: Unparker::current(),
            flag: AtomicBool::new(false),
            handed: AtomicBool::new(false),
        })
    }

    fn is_set(&self) -> bool {
        // Acquire: pairs with the Release in `signal`.
        self.flag.load(Ordering::Acquire)
    }

    /// Waits for the signal.
    fn wait(&self) {
        while !self.is_set() {
            park();
        }
    }

    /// Waits for the signal until `deadline`; false if it did not come by then (the caller
    /// must then withdraw the node under its lock, and re-check `is_set`).
    fn wait_until(&self, deadline: Instant) -> bool {
        while !self.is_set() {
            if Instant::now() >= deadline {
                return false;
            }
            park_deadline(deadline);
        }
        true
    }

    /// Lets the waiter proceed. Call without holding the primitive's internal lock.
    fn signal(&self) {
        // Release: what the signaller handed over is visible to the waiter's Acquire.
        self.flag.store(true, Ordering::Release);
        self.unparker.unpark(true);
    }
}

fn lock<T>(m: &StdMutex<T>) -> StdGuard<'_, T> {
    // The internal locks guard only queues and counters; no user code runs under them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn remove(q: &mut VecDeque<Arc<Node>>, n: &Arc<Node>) -> bool {
    match q.iter().position(|x| Arc::ptr_eq(x, n)) {
        Some(i) => {
            q.remove(i);
            true
        }
        None => false,
    }
}

// ---- Mutex ---------------------------------------------------------------------------

const LOCKED: usize = 1;
/// Starvation mode: the lock goes straight to the first waiter, newcomers queue.
const STARVING: usize = 2;
/// The wait queue is not empty (kept in step with it, under the queue lock).
const WAITERS: usize = 4;

/// How long a waiter may be passed over before the mutex switches to starvation mode
/// (Go's `starvationThresholdNs`).
const STARVATION: Duration = Duration::from_millis(1);

/// A mutual-exclusion lock for green threads (Go's `sync.Mutex`), protecting a `T`.
///
/// Normal mode lets a newly arriving locker take the lock ahead of a woken waiter (it is
/// already running, which keeps throughput high); a waiter passed over for more than 1 ms
/// switches the mutex to starvation mode, in which `unlock` hands the lock directly to the
/// first waiter, in FIFO order, until the queue drains. No poisoning: a panic while locked
/// just unlocks.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::Mutex;
/// use std::sync::Arc;
///
/// let m = Arc::new(Mutex::new(0));
/// let hs: Vec<_> = (0..10).map(|_| {
///     let m = m.clone();
///     gort_runtime::go!(move || *m.lock() += 1)
/// }).collect();
/// for h in hs { h.join().unwrap(); }
/// assert_eq!(*m.lock(), 10);
/// ```
pub struct Mutex<T: ?Sized> {
    state: AtomicUsize,
    queue: StdMutex<VecDeque<Arc<Node>>>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one holder at a time access to `data`; the holder may be on any
// thread, so T: Send is needed, and is enough (as for std's Mutex).
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// RAII guard of a locked [`Mutex`]; unlocks when dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
}

// SAFETY: the guard gives `&T` (Sync needs T: Sync) and `&mut T` to one holder at a time.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicUsize::new(0),
            queue: StdMutex::new(VecDeque::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the caller while another holder has it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // Acquire: pairs with the Release of the previous unlock.
        if self
            .state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        MutexGuard { mutex: self }
    }

    /// Locks if that is possible without waiting.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & (LOCKED | STARVING) == 0 {
            // Acquire: pairs with the Release of the previous unlock.
            match self
                .state
                .compare_exchange(s, s | LOCKED, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Some(MutexGuard { mutex: self }),
                Err(x) => s = x,
            }
        }
        None
    }

    /// A mutable reference, without locking (the borrow proves exclusivity).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    #[cold]
    fn lock_slow(&self) {
        let start = Instant::now();
        let mut front = false;
        loop {
            let node;
            {
                let mut q = lock(&self.queue);
                let mut s = self.state.load(Ordering::Relaxed);
                loop {
                    if s & (LOCKED | STARVING) == 0 {
                        // Free, and barging is allowed: take it.
                        match self.state.compare_exchange(
                            s,
                            s | LOCKED,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => return,
                            Err(x) => s = x,
                        }
                    } else {
                        // Advertise a waiter with a CAS against the state we saw, so that an
                        // unlock either sees WAITERS (and comes through the queue lock) or
                        // changed the state first (and we look again).
                        let mut ns = s | WAITERS;
                        if front && start.elapsed() > STARVATION {
                            ns |= STARVING;
                        }
                        match self.state.compare_exchange(
                            s,
                            ns,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => break,
                            Err(x) => s = x,
                        }
                    }
                }
                node = Node::new();
                if front {
                    q.push_front(node.clone());
                } else {
                    q.push_back(node.clone());
                }
            }
            node.wait();
            // Woken. In starvation mode the lock was handed to us (LOCKED kept set);
            // otherwise it was released and we compete for it, at the front of the queue.
            if node.handed.load(Ordering::Relaxed) {
                // Go's rule: a waiter handed the lock after less than the starvation
                // threshold ends starvation mode (else a long queue would keep every lock
                // a hand-off, a park and a wake-up each, as long as it stays long). We hold
                // the lock; other writers of the state use CAS and see this.
                if start.elapsed() < STARVATION {
                    self.state.fetch_and(!STARVING, Ordering::Relaxed);
                }
                return;
            }
            front = true;
        }
    }

    fn unlock(&self) {
        // Release: pairs with the next locker's Acquire.
        if self
            .state
            .compare_exchange(LOCKED, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.unlock_slow();
    }

    #[cold]
    fn unlock_slow(&self) {
        let next;
        {
            let mut q = lock(&self.queue);
            let s = self.state.load(Ordering::Relaxed);
            next = q.pop_front();
            let waiters = if q.is_empty() { 0 } else { WAITERS };
            match &next {
                Some(n) if s & STARVING != 0 => {
                    // Hand the lock over: it stays LOCKED; starvation ends with the queue.
                    let starving = if q.is_empty() { 0 } else { STARVING };
                    self.state
                        .store(LOCKED | starving | waiters, Ordering::Release);
                    n.handed.store(true, Ordering::Relaxed);
                }
                _ => {
                    // Release the lock; the woken waiter competes for it.
                    self.state.store(waiters, Ordering::Release);
                }
            }
        }
        if let Some(n) = next {
            n.signal();
        }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("Mutex").field("data", &&*g).finish(),
            None => f.debug_struct("Mutex").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

// ---- RwLock --------------------------------------------------------------------------

struct RwState {
    /// Readers holding the lock.
    readers: usize,
    /// A writer holds the lock.
    writer: bool,
    /// Waiters in arrival order; `true` marks a writer.
    queue: VecDeque<(bool, Arc<Node>)>,
}

/// A reader-writer lock for green threads (Go's `sync.RWMutex`), protecting a `T`.
///
/// Fair: waiters are served in arrival order, consecutive readers together; a reader that
/// arrives while a writer waits queues behind it, so writers are not starved by a stream of
/// readers. The lock is handed directly to the woken waiters.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::RwLock;
/// let l = RwLock::new(5);
/// {
///     let a = l.read();
///     let b = l.read();
///     assert_eq!(*a + *b, 10);
/// }
/// *l.write() += 1;
/// assert_eq!(*l.read(), 6);
/// ```
pub struct RwLock<T: ?Sized> {
    state: StdMutex<RwState>,
    data: UnsafeCell<T>,
}

// SAFETY: writers get exclusive access, readers shared access (hence T: Sync for Sync);
// holders may be on any thread (T: Send).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// RAII shared access to a [`RwLock`].
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

/// RAII exclusive access to a [`RwLock`].
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

// SAFETY: a read guard only gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: a write guard gives `&T`/`&mut T` to its one holder.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: StdMutex::new(RwState {
                readers: 0,
                writer: false,
                queue: VecDeque::new(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, parking while a writer holds or waits for the lock.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let node = {
            let mut st = lock(&self.state);
            if !st.writer && st.queue.is_empty() {
                st.readers += 1;
                return RwLockReadGuard { lock: self };
            }
            let n = Node::new();
            st.queue.push_back((false, n.clone()));
            n
        };
        // Signalled: the unlocker counted us in `readers`.
        node.wait();
        RwLockReadGuard { lock: self }
    }

    /// Locks for reading if that is possible without waiting.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut st = lock(&self.state);
        if !st.writer && st.queue.is_empty() {
            st.readers += 1;
            return Some(RwLockReadGuard { lock: self });
        }
        None
    }

    /// Locks for writing, parking while anyone holds the lock.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let node = {
            let mut st = lock(&self.state);
            if !st.writer && st.readers == 0 && st.queue.is_empty() {
                st.writer = true;
                return RwLockWriteGuard { lock: self };
            }
            let n = Node::new();
            st.queue.push_back((true, n.clone()));
            n
        };
        // Signalled: the unlocker set `writer` for us.
        node.wait();
        RwLockWriteGuard { lock: self }
    }

    /// Locks for writing if that is possible without waiting.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut st = lock(&self.state);
        if !st.writer && st.readers == 0 && st.queue.is_empty() {
            st.writer = true;
            return Some(RwLockWriteGuard { lock: self });
        }
        None
    }

    /// A mutable reference, without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Hands the lock to the next waiters, if it is free: one writer, or every reader at
    /// the front of the queue. Called with the state locked; returns whom to signal.
    fn grant(st: &mut RwState) -> Vec<Arc<Node>> {
        let mut wake = Vec::new();
        if st.writer {
            return wake;
        }
        while let Some((is_writer, _)) = st.queue.front() {
            if *is_writer {
                if st.readers == 0 && wake.is_empty() {
                    let (_, n) = st.queue.pop_front().expect("front exists");
                    st.writer = true;
                    wake.push(n);
                }
                break;
            }
            let (_, n) = st.queue.pop_front().expect("front exists");
            st.readers += 1;
            wake.push(n);
        }
        wake
    }

    fn read_unlock(&self) {
        let wake = {
            let mut st = lock(&self.state);
            st.readers -= 1;
            Self::grant(&mut st)
        };
        wake.iter().for_each(|n| n.signal());
    }

    fn write_unlock(&self) {
        let wake = {
            let mut st = lock(&self.state);
            st.writer = false;
            Self::grant(&mut st)
        };
        wake.iter().for_each(|n| n.signal());
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: no writer.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held: exclusive.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(g) => f.debug_struct("RwLock").field("data", &&*g).finish(),
            None => f.debug_struct("RwLock").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

// ---- Condvar -------------------------------------------------------------------------

/// A condition variable for green threads, used with [`Mutex`].
///
/// `wait` releases the mutex and parks until notified; spurious wake-ups do not happen
/// (a waiter returns only when notified or, for the `_timeout` forms, when time is up), but
/// as with any condition variable the condition may have changed again by the time the mutex
/// is re-locked: check it in a loop, or use [`Condvar::wait_while`].
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::{Condvar, Mutex};
/// use std::sync::Arc;
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let p2 = pair.clone();
/// gort_runtime::go!(move || {
///     *p2.0.lock() = true;
///     p2.1.notify_one();
/// });
/// let (m, cv) = &*pair;
/// let ready = cv.wait_while(m.lock(), |r| !*r);
/// assert!(*ready);
/// ```
pub struct Condvar {
    queue: StdMutex<VecDeque<Arc<Node>>>,
}

/// Whether a timed wait returned because its time was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout elapsed.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Condvar { .. }")
    }
}

impl Condvar {
    /// A new condition variable.
    pub const fn new() -> Condvar {
        Condvar {
            queue: StdMutex::new(VecDeque::new()),
        }
    }

    /// Releases the mutex, parks until notified, re-locks the mutex.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let m = guard.mutex;
        // Queued before the mutex is released: a notify after that cannot be missed.
        let node = Node::new();
        lock(&self.queue).push_back(node.clone());
        drop(guard);
        node.wait();
        m.lock()
    }

    /// Waits until `condition` is false, re-checking it after every wake-up.
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> MutexGuard<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// As `wait`, for at most `timeout`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return (self.wait(guard), WaitTimeoutResult(false));
        };
        let m = guard.mutex;
        let node = Node::new();
        lock(&self.queue).push_back(node.clone());
        drop(guard);
        let mut timed_out = false;
        if !node.wait_until(deadline) {
            // Withdraw; if we are no longer queued, a notify picked us meanwhile.
            timed_out = remove(&mut lock(&self.queue), &node);
            if !timed_out {
                node.wait();
            }
        }
        (m.lock(), WaitTimeoutResult(timed_out))
    }

    /// As `wait_while`, for at most `timeout` in all.
    pub fn wait_timeout_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: F,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult)
    where
        F: FnMut(&mut T) -> bool,
    {
        let start = Instant::now();
        while condition(&mut *guard) {
            let left = match timeout.checked_sub(start.elapsed()) {
                Some(d) if !d.is_zero() => d,
                _ => return (guard, WaitTimeoutResult(true)),
            };
            guard = self.wait_timeout(guard, left).0;
        }
        (guard, WaitTimeoutResult(false))
    }

    /// Wakes one waiter, the longest waiting.
    pub fn notify_one(&self) {
        let n = lock(&self.queue).pop_front();
        if let Some(n) = n {
            n.signal();
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let all: Vec<_> = lock(&self.queue).drain(..).collect();
        all.iter().for_each(|n| n.signal());
    }
}

// ---- WaitGroup -----------------------------------------------------------------------

struct WgState {
    count: usize,
    waiters: Vec<Arc<Node>>,
}

/// Waits for a collection of green threads to finish (Go's `sync.WaitGroup`).
///
/// `add(n)` before starting work, `done()` when a piece finishes, `wait()` until the count
/// is zero. Clones share one counter.
///
/// # Panics
///
/// `done` panics if it would take the counter below zero.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::WaitGroup;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let wg = WaitGroup::new();
/// let n = Arc::new(AtomicUsize::new(0));
/// for _ in 0..100 {
///     wg.add(1);
///     let (wg, n) = (wg.clone(), n.clone());
///     gort_runtime::go!(move || {
///         n.fetch_add(1, Ordering::Relaxed);
///         wg.done();
///     });
/// }
/// wg.wait();
/// assert_eq!(n.load(Ordering::Relaxed), 100);
/// ```
#[derive(Clone)]
pub struct WaitGroup {
    inner: Arc<StdMutex<WgState>>,
}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &lock(&self.inner).count)
            .finish()
    }
}

impl WaitGroup {
    /// A wait group with a count of zero.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(StdMutex::new(WgState {
                count: 0,
                waiters: Vec::new(),
            })),
        }
    }

    /// Adds `n` to the count.
    pub fn add(&self, n: usize) {
        let mut st = lock(&self.inner);
        st.count = st
            .count
            .checked_add(n)
            .expect("gort::sync::WaitGroup::add: counter overflow");
    }

    /// Subtracts one from the count, waking the waiters when it reaches zero.
    pub fn done(&self) {
        let wake = {
            let mut st = lock(&self.inner);
            if st.count == 0 {
                drop(st);
                panic!(
                    "gort::sync::WaitGroup::done called more times than add: the counter \
                     would go below zero"
                );
            }
            st.count -= 1;
            if st.count == 0 {
                std::mem::take(&mut st.waiters)
            } else {
                Vec::new()
            }
        };
        wake.iter().for_each(|n| n.signal());
    }

    /// Parks until the count is zero (returns at once if it is).
    pub fn wait(&self) {
        let node = {
            let mut st = lock(&self.inner);
            if st.count == 0 {
                return;
            }
            let n = Node::new();
            st.waiters.push(n.clone());
            n
        };
        node.wait();
    }

    /// The current count.
    pub fn count(&self) -> usize {
        lock(&self.inner).count
    }
}

// ---- Semaphore -----------------------------------------------------------------------

struct SemState {
    permits: usize,
    queue: VecDeque<Arc<Node>>,
}

/// A counting semaphore: at most `permits` holders at once. Waiters are served in FIFO
/// order, each freed permit going straight to the first of them.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::Semaphore;
/// let s = Semaphore::new(2);
/// let a = s.acquire();
/// let b = s.acquire();
/// assert!(s.try_acquire().is_none());
/// drop(a);
/// assert!(s.try_acquire().is_some());
/// # drop(b);
/// ```
pub struct Semaphore {
    state: StdMutex<SemState>,
}

/// A permit of a [`Semaphore`]; released when dropped.
#[derive(Debug)]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available_permits())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: StdMutex::new(SemState {
                permits,
                queue: VecDeque::new(),
            }),
        }
    }

    /// Takes a permit, parking until one is free.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        if let Err(node) = self.take_or_queue() {
            // Signalled: a permit was handed to us.
            node.wait();
        }
        SemaphorePermit { sem: self }
    }

    /// Takes a free permit (`Ok`), or queues the caller (`Err` with its node) when none is
    /// free or others already wait (FIFO: no overtaking).
    fn take_or_queue(&self) -> Result<(), Arc<Node>> {
        let mut st = lock(&self.state);
        if st.permits > 0 && st.queue.is_empty() {
            st.permits -= 1;
            return Ok(());
        }
        let n = Node::new();
        st.queue.push_back(n.clone());
        Err(n)
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        let mut st = lock(&self.state);
        if st.permits > 0 && st.queue.is_empty() {
            st.permits -= 1;
            return Some(SemaphorePermit { sem: self });
        }
        None
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        let node = match self.take_or_queue() {
            Ok(()) => return Some(SemaphorePermit { sem: self }),
            Err(node) => node,
        };
        let deadline = Instant::now().checked_add(timeout);
        if let Some(d) = deadline {
            if !node.wait_until(d) {
                if remove(&mut lock(&self.state).queue, &node) {
                    return None;
                }
                // A permit was handed to us just as the time ran out: keep it.
                node.wait();
            }
        } else {
            node.wait();
        }
        Some(SemaphorePermit { sem: self })
    }

    /// Adds `n` permits (handing them to waiters first).
    pub fn add_permits(&self, n: usize) {
        let wake = {
            let mut st = lock(&self.state);
            st.permits += n;
            let mut wake = Vec::new();
            while st.permits > 0 {
                match st.queue.pop_front() {
                    Some(w) => {
                        st.permits -= 1;
                        wake.push(w);
                    }
                    None => break,
                }
            }
            wake
        };
        wake.iter().for_each(|n| n.signal());
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        lock(&self.state).permits
    }

    fn release(&self) {
        self.add_permits(1);
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken for good (the semaphore has one fewer from now on).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}

// ---- Barrier -------------------------------------------------------------------------

struct BarrierState {
    arrived: usize,
    generation: u64,
    waiters: Vec<Arc<Node>>,
}

/// Lets `n` green threads wait for each other; reusable, like `std::sync::Barrier`.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::Barrier;
/// use std::sync::Arc;
/// let b = Arc::new(Barrier::new(3));
/// let hs: Vec<_> = (0..3).map(|_| {
///     let b = b.clone();
///     gort_runtime::go!(move || b.wait().is_leader())
/// }).collect();
/// let leaders = hs.into_iter().map(|h| h.join().unwrap()).filter(|l| *l).count();
/// assert_eq!(leaders, 1);
/// ```
pub struct Barrier {
    n: usize,
    state: StdMutex<BarrierState>,
}

/// What [`Barrier::wait`] returns: exactly one waiter per round is the leader.
#[derive(Debug, Clone, Copy)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for one waiter of each round (the last to arrive).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish()
    }
}

impl Barrier {
    /// A barrier for `n` parties (`0` behaves as `1`).
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n: n.max(1),
            state: StdMutex::new(BarrierState {
                arrived: 0,
                generation: 0,
                waiters: Vec::new(),
            }),
        }
    }

    /// Parks until `n` parties have called `wait` in this round.
    pub fn wait(&self) -> BarrierWaitResult {
        let node = {
            let mut st = lock(&self.state);
            st.arrived += 1;
            if st.arrived == self.n {
                st.arrived = 0;
                st.generation += 1;
                let wake = std::mem::take(&mut st.waiters);
                drop(st);
                wake.iter().for_each(|n| n.signal());
                return BarrierWaitResult(true);
            }
            let n = Node::new();
            st.waiters.push(n.clone());
            n
        };
        node.wait();
        BarrierWaitResult(false)
    }
}

// ---- Once ----------------------------------------------------------------------------

const ONCE_NEW: u8 = 0;
const ONCE_RUNNING: u8 = 1;
const ONCE_DONE: u8 = 2;

/// Runs a closure exactly once (Go's `sync.Once`); callers that arrive while it runs park
/// until it has finished.
///
/// As in Go, a closure that panics counts as having run: later calls do nothing (std's
/// `Once` would poison instead).
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::Once;
/// static INIT: Once = Once::new();
/// let mut n = 0;
/// INIT.call_once(|| n += 1);
/// INIT.call_once(|| n += 1);
/// assert_eq!(n, 1);
/// assert!(INIT.is_completed());
/// ```
pub struct Once {
    state: AtomicU8,
    waiters: StdMutex<Vec<Arc<Node>>>,
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("completed", &self.is_completed())
            .finish()
    }
}

impl Default for Once {
    fn default() -> Self {
        Once::new()
    }
}

impl Once {
    /// A new `Once`.
    pub const fn new() -> Once {
        Once {
            state: AtomicU8::new(ONCE_NEW),
            waiters: StdMutex::new(Vec::new()),
        }
    }

    /// Runs `f` if no call has run it yet; otherwise waits for that call to finish.
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        // Acquire: pairs with the Release store of DONE, making f's effects visible.
        if self.state.load(Ordering::Acquire) == ONCE_DONE {
            return;
        }
        if self
            .state
            .compare_exchange(ONCE_NEW, ONCE_RUNNING, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
        {
            struct Finish<'a>(&'a Once);
            impl Drop for Finish<'_> {
                fn drop(&mut self) {
                    let wake = {
                        let mut w = lock(&self.0.waiters);
                        // Release: publishes f's effects; under the lock so that a waiter
                        // either sees DONE or is in the list we drain.
                        self.0.state.store(ONCE_DONE, Ordering::Release);
                        std::mem::take(&mut *w)
                    };
                    wake.iter().for_each(|n| n.signal());
                }
            }
            let _finish = Finish(self);
            f();
            return;
        }
        let node = {
            let mut w = lock(&self.waiters);
            if self.state.load(Ordering::Acquire) == ONCE_DONE {
                return;
            }
            let n = Node::new();
            w.push(n.clone());
            n
        };
        node.wait();
    }

    /// Whether a call has finished running the closure.
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ONCE_DONE
    }
}
