//! [`Once`]: Go's `sync.Once`.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{lock, Node, Wait};

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
        node.wait(Wait::Once);
    }

    /// Whether a call has finished running the closure.
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ONCE_DONE
    }
}
