//! [`Semaphore`]: a counting semaphore with FIFO waiters.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiter::{lock, remove, Node};

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
