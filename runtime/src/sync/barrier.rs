//! [`Barrier`]: `n` green threads wait for each other; reusable.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{lock, Node, Wait};

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
        node.wait(Wait::Barrier);
        BarrierWaitResult(false)
    }
}
