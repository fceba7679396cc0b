//! [`WaitGroup`]: Go's `sync.WaitGroup`.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{lock, Node};

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
