//! [`Mutex`]: Go's `sync.Mutex` (a state word, FIFO waiters, starvation mode) with a guard.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiter::{lock, Node, Wait};
use crate::sched::can_spin;

/// `spin_loop` hints (x86 PAUSE) per spin, Go's `active_spin_cnt`. Go's 30 are about 900
/// cycles on this project's benchmark machine (a PAUSE is 29.5 cycles there, 140 on recent
/// Intel cores) and measured no faster than Go's mutex; 100 (about 3,000 cycles, 1 µs, here)
/// let a holder on another core finish its section and give the lock back more often than
/// not before the spinner parks: at most 4 spins, so a spinner gives up after about 4 µs,
/// under the cost of a park and a wake-up. Blind spinning, not polling: a spinner that
/// pounced the moment the lock came free took the holder's cache line at every release and
/// halved throughput (BENCHMARKS.md).
const SPIN_PAUSES: u32 = 100;

const LOCKED: usize = 1;
/// Starvation mode: the lock goes straight to the first waiter, newcomers queue.
const STARVING: usize = 2;
/// The wait queue is not empty (kept in step with it, under the queue lock).
const WAITERS: usize = 4;
/// Go's `mutexWoken`: a waiter was woken, or a locker is spinning, and will take the lock
/// when it comes free, so `unlock` need not wake another. Set by the unlock that wakes a
/// waiter or by a spinner; cleared by the same party when it gets the lock or queues.
const WOKEN: usize = 8;

/// How long a waiter may be passed over before the mutex switches to starvation mode
/// (Go's `starvationThresholdNs`).
const STARVATION: Duration = Duration::from_millis(1);

/// The state after taking the free lock `s`, dropping WOKEN if the taker owned it (`awoke`).
fn taken(s: usize, awoke: bool) -> usize {
    if awoke {
        (s | LOCKED) & !WOKEN
    } else {
        s | LOCKED
    }
}

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
    pub(super) mutex: &'a Mutex<T>,
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
        // When we first queued (read the clock only then, as Go does: a lock won by
        // spinning never pays for it).
        let mut start = None::<Instant>;
        let mut front = false;
        // We own WOKEN: we set it while spinning, or the unlock that woke us did.
        let mut awoke = false;
        let mut iter = 0;
        loop {
            // Go's adaptive spin: held by someone else running right now, in normal mode,
            // and spinning is worth it (see `can_spin`): wait a few hundred cycles for it
            // instead of a park and a wake-up, and tell `unlock` not to wake a waiter.
            let s = self.state.load(Ordering::Relaxed);
            if s & (LOCKED | STARVING) == LOCKED && can_spin(iter) {
                if !awoke
                    && s & (WOKEN | WAITERS) == WAITERS
                    && self
                        .state
                        .compare_exchange(s, s | WOKEN, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    awoke = true;
                }
                for _ in 0..SPIN_PAUSES {
                    std::hint::spin_loop();
                }
                iter += 1;
                continue;
            }
            if s & (LOCKED | STARVING) == 0 {
                // Free: take it without the queue lock.
                // Acquire: pairs with the Release of the previous unlock.
                if self
                    .state
                    .compare_exchange(s, taken(s, awoke), Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            let node;
            {
                let mut q = lock(&self.queue);
                let mut s = self.state.load(Ordering::Relaxed);
                loop {
                    if s & (LOCKED | STARVING) == 0 {
                        // Free, and barging is allowed: take it.
                        match self.state.compare_exchange(
                            s,
                            taken(s, awoke),
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => return,
                            Err(x) => s = x,
                        }
                    } else {
                        // Advertise a waiter with a CAS against the state we saw, so that an
                        // unlock either sees WAITERS (and comes through the queue lock) or
                        // changed the state first (and we look again). A WOKEN of ours goes:
                        // we are about to sleep, so the next unlock must wake someone.
                        let mut ns = s | WAITERS;
                        if awoke {
                            ns &= !WOKEN;
                        }
                        if front && start.is_some_and(|t| t.elapsed() > STARVATION) {
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
                // A WOKEN of ours was dropped by the CAS above; the unlock that wakes us
                // sets it for us again.
                start.get_or_insert_with(Instant::now);
                node = Node::new();
                if front {
                    q.push_front(node.clone());
                } else {
                    q.push_back(node.clone());
                }
            }
            node.wait(Wait::Mutex);
            // Woken. In starvation mode the lock was handed to us (LOCKED kept set);
            // otherwise it was released and we compete for it, at the front of the queue.
            if node.handed.load(Ordering::Relaxed) {
                // Go's rule: a waiter handed the lock after less than the starvation
                // threshold ends starvation mode (else a long queue would keep every lock
                // a hand-off, a park and a wake-up each, as long as it stays long). We hold
                // the lock; other writers of the state use CAS and see this.
                if start.is_some_and(|t| t.elapsed() < STARVATION) {
                    self.state.fetch_and(!STARVING, Ordering::Relaxed);
                }
                return;
            }
            // The unlock that woke us set WOKEN for us.
            front = true;
            awoke = true;
            iter = 0;
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
        // Normal mode with nobody to wake, or someone already woken or spinning: just
        // release, without the queue lock (Go's unlockSlow).
        let mut s = self.state.load(Ordering::Relaxed);
        while s & STARVING == 0 && (s & WAITERS == 0 || s & WOKEN != 0) {
            // Release: pairs with the next locker's Acquire.
            match self.state.compare_exchange_weak(
                s,
                s & !LOCKED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(x) => s = x,
            }
        }
        let next;
        {
            let mut q = lock(&self.queue);
            next = q.pop_front();
            let waiters = if q.is_empty() { 0 } else { WAITERS };
            // CAS loops: spinners set WOKEN without the queue lock.
            let mut s = self.state.load(Ordering::Relaxed);
            loop {
                let ns = match &next {
                    // Hand the lock over: it stays LOCKED; starvation ends with the queue.
                    Some(_) if s & STARVING != 0 => {
                        let starving = if q.is_empty() { 0 } else { STARVING };
                        LOCKED | starving | waiters | (s & WOKEN)
                    }
                    // Release the lock; the woken waiter competes for it (and owns WOKEN).
                    Some(_) => waiters | WOKEN,
                    None => (s & WOKEN) | waiters,
                };
                // Release: pairs with the next locker's Acquire (or the handed waiter's
                // Acquire of its node's flag, through `signal`).
                match self
                    .state
                    .compare_exchange_weak(s, ns, Ordering::Release, Ordering::Relaxed)
                {
                    Ok(_) => break,
                    Err(x) => s = x,
                }
            }
            if let Some(n) = &next {
                if s & STARVING != 0 {
                    n.handed.store(true, Ordering::Relaxed);
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
