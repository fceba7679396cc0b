//! [`Semaphore`]: a counting semaphore with FIFO waiters.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiter::{lock, remove, Node};

/// In `Semaphore::state`: the wait queue is not empty. Set and cleared under the queue lock;
/// while it is set the count is 0 (every freed permit goes to a waiter), so the fast paths,
/// which run only while it is clear, never overtake a waiter.
const WAITING: usize = 1;
/// One permit in `Semaphore::state` (the count sits above the flag).
const ONE: usize = 2;

/// A counting semaphore: at most `permits` holders at once. Waiters are served in FIFO
/// order, each freed permit going straight to the first of them.
///
/// `acquire` and a permit's release are one atomic operation each while nobody waits; only
/// waiting takes the internal lock.
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
    /// `permits * ONE | WAITING`.
    state: AtomicUsize,
    queue: StdMutex<VecDeque<Arc<Node>>>,
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
    /// The most permits a semaphore can hold.
    pub const MAX_PERMITS: usize = usize::MAX / ONE;

    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub const fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= Semaphore::MAX_PERMITS,
            "Semaphore::new: more than Semaphore::MAX_PERMITS permits"
        );
        Semaphore {
            state: AtomicUsize::new(permits * ONE),
            queue: StdMutex::new(VecDeque::new()),
        }
    }

    /// Takes a permit, parking until one is free.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        if !self.try_take() {
            if let Err(node) = self.take_or_queue() {
                // Signalled: a permit was handed to us.
                node.wait();
            }
        }
        SemaphorePermit { sem: self }
    }

    /// The fast path: takes a permit if one is free and nobody waits.
    fn try_take(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & WAITING == 0 && s >= ONE {
            // Acquire: pairs with the Release of the release that freed the permit.
            match self
                .state
                .compare_exchange_weak(s, s - ONE, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
        false
    }

    /// Takes a free permit (`Ok`), or queues the caller (`Err` with its node) when none is
    /// free or others already wait (FIFO: no overtaking).
    fn take_or_queue(&self) -> Result<(), Arc<Node>> {
        let mut q = lock(&self.queue);
        loop {
            if self.try_take() {
                return Ok(());
            }
            // No permit for us: raise the flag against the state we saw (count 0, or the
            // flag already up). A release either saw it and comes through the queue lock,
            // or changed the state first and we look again.
            let s = self.state.load(Ordering::Relaxed);
            if (s & WAITING != 0 || s < ONE)
                && self
                    .state
                    .compare_exchange(s, s | WAITING, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
        }
        let n = Node::new();
        q.push_back(n.clone());
        Err(n)
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit built and dropped would release one.
        self.try_take().then(|| SemaphorePermit { sem: self })
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        if self.try_take() {
            return Some(SemaphorePermit { sem: self });
        }
        let node = match self.take_or_queue() {
            Ok(()) => return Some(SemaphorePermit { sem: self }),
            Err(node) => node,
        };
        let deadline = Instant::now().checked_add(timeout);
        if let Some(d) = deadline {
            if !node.wait_until(d) {
                let mut q = lock(&self.queue);
                if remove(&mut q, &node) {
                    if q.is_empty() {
                        // Still counted as 0: the flag alone goes.
                        self.state.fetch_and(!WAITING, Ordering::Relaxed);
                    }
                    return None;
                }
                drop(q);
                // A permit was handed to us just as the time ran out: keep it.
                node.wait();
            }
        } else {
            node.wait();
        }
        Some(SemaphorePermit { sem: self })
    }

    /// Adds `n` permits (handing them to waiters first).
    ///
    /// # Panics
    /// If the semaphore would hold more than [`Semaphore::MAX_PERMITS`] permits.
    pub fn add_permits(&self, n: usize) {
        if n == 0 {
            return;
        }
        let add = n
            .checked_mul(ONE)
            .expect("Semaphore::add_permits: more than Semaphore::MAX_PERMITS permits");
        // Fast path: nobody waits, one atomic add.
        let mut s = self.state.load(Ordering::Relaxed);
        while s & WAITING == 0 {
            let ns = s
                .checked_add(add)
                .expect("Semaphore::add_permits: more than Semaphore::MAX_PERMITS permits");
            // Release: pairs with the Acquire of whoever takes the permit.
            match self
                .state
                .compare_exchange_weak(s, ns, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(x) => s = x,
            }
        }
        let wake = {
            let mut q = lock(&self.queue);
            let mut wake = Vec::new();
            let mut left = n;
            while left > 0 {
                match q.pop_front() {
                    Some(w) => {
                        left -= 1;
                        wake.push(w);
                    }
                    None => break,
                }
            }
            if q.is_empty() {
                // The rest become free permits, and the flag goes. The flag cannot be set
                // by anyone else while we hold the queue lock, so this is the only writer
                // but the fast paths, which do nothing while the flag is set.
                let mut s = self.state.load(Ordering::Relaxed);
                loop {
                    let ns = (s & !WAITING)
                        .checked_add(left * ONE)
                        .expect("Semaphore::add_permits: more than Semaphore::MAX_PERMITS permits");
                    // Release: as in the fast path.
                    match self.state.compare_exchange_weak(
                        s,
                        ns,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(x) => s = x,
                    }
                }
            }
            wake
        };
        // Each woken waiter owns a permit handed over by the node's flag (Release/Acquire).
        wake.iter().for_each(|n| n.signal());
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.state.load(Ordering::Relaxed) / ONE
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
