//! [`Condvar`]: a condition variable used with the module's `Mutex`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiter::{lock, remove, Node, Wait};
use super::MutexGuard;

/// A condition variable for green threads, used with [`Mutex`](super::Mutex).
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
        node.wait(Wait::Condvar);
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
        if !node.wait_until(deadline, Wait::Condvar) {
            // Withdraw; if we are no longer queued, a notify picked us meanwhile.
            timed_out = remove(&mut lock(&self.queue), &node);
            if !timed_out {
                node.wait(Wait::Condvar);
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
        let mut waited = false;
        while condition(&mut *guard) {
            let left = match timeout.checked_sub(start.elapsed()) {
                Some(d) if !d.is_zero() => d,
                // Out of time before any wait (a nanosecond's timeout): one wait all the same,
                // which gives way before it times out (`park::park_until`), so that a loop
                // of such calls lets the G that would make the condition false run.
                _ if !waited => Duration::from_nanos(1),
                _ => return (guard, WaitTimeoutResult(true)),
            };
            guard = self.wait_timeout(guard, left).0;
            waited = true;
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
