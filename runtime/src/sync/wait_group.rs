//! [`WaitGroup`]: Go's `sync.WaitGroup`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiter::{lock, Node, Wait};

/// Bits of the state word: the count in the high half; in the low half, the number of
/// registered waiters (24 bits) and a round number (8 bits), bumped by the `add` that takes
/// the count from zero. (Go's `sync.WaitGroup` packs the count and the waiters the same way.)
/// The round lets a waiter that times out tell, under the lock, whether the count has been
/// through zero since it registered (then a release for it is under way and it must not
/// leave the list, whose nodes of that round the release is about to signal).
const COUNT_ONE: u64 = 1 << 32;
const COUNT_MAX: u64 = u32::MAX as u64;
const WAITERS_MASK: u64 = (1 << 24) - 1;
const ROUND_SHIFT: u32 = 24;

/// The round a state word is in (its 8 bits above the waiter count).
fn round_of(state: u64) -> u64 {
    (state >> ROUND_SHIFT) & 0xFF
}

struct WgInner {
    state: AtomicU64,
    /// Waiters in registration order. A waiter registers (bumps the low half of `state` and
    /// pushes its node) under this lock, so that the list always holds exactly as many nodes
    /// as the low half counts, in the order of their increments; each with the round it
    /// registered in, which the release of that round wakes.
    waiters: StdMutex<VecDeque<(Arc<Node>, u64)>>,
}

/// Waits for a collection of green threads to finish (Go's `sync.WaitGroup`).
///
/// `add(n)` before starting work, `done()` when a piece finishes, `wait()` until the count
/// is zero. Clones share one counter.
///
/// `add` and `done` are one atomic operation each; only `wait`, when it has to wait, and the
/// `done` that releases waiters take a lock.
///
/// A group may be reused at once, even while the waiters of its last round are still on
/// their way out (Go forbids that): a `wait` that starts after a new `add` waits for the new
/// round only, and a round's `done` wakes exactly that round's waiters.
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
    inner: Arc<WgInner>,
}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}

impl WaitGroup {
    /// A wait group with a count of zero.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(WgInner {
                state: AtomicU64::new(0),
                waiters: StdMutex::new(VecDeque::new()),
            }),
        }
    }

    /// Adds `n` to the count.
    ///
    /// # Panics
    ///
    /// If the count would exceed `u32::MAX`.
    pub fn add(&self, n: usize) {
        if n == 0 {
            return;
        }
        let Some(delta) = u64::try_from(n).ok().filter(|d| *d <= COUNT_MAX) else {
            panic!("gort::sync::WaitGroup::add: counter overflow");
        };
        let mut s = self.inner.state.load(Ordering::Relaxed);
        loop {
            let count = s >> 32;
            if count + delta > COUNT_MAX {
                panic!("gort::sync::WaitGroup::add: counter overflow");
            }
            // From zero: a new round.
            let low = if count == 0 {
                let round = (round_of(s) + 1) & 0xFF;
                (round << ROUND_SHIFT) | (s & WAITERS_MASK)
            } else {
                s & COUNT_MAX
            };
            // Relaxed: adding publishes nothing; the `done` that takes the count back to
            // zero is what waiters synchronise with (an RMW keeps the release sequence going).
            match self.inner.state.compare_exchange_weak(
                s,
                ((count + delta) << 32) | low,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
    }

    /// Subtracts one from the count, waking the waiters when it reaches zero.
    ///
    /// # Panics
    ///
    /// If the count is already zero (more `done`s than `add`s).
    pub fn done(&self) {
        // AcqRel: Release publishes this worker's writes to whoever sees the count at zero
        // (a waiter's Acquire load, or the last `done`, whose Acquire here makes every
        // earlier `done`'s writes part of what it hands to the waiters it signals).
        let old = self.inner.state.fetch_sub(COUNT_ONE, Ordering::AcqRel);
        if old >> 32 == 0 {
            self.inner.state.fetch_add(COUNT_ONE, Ordering::Relaxed);
            panic!(
                "gort::sync::WaitGroup::done called more times than add: the counter \
                 would go below zero"
            );
        }
        if old >> 32 == 1 && old & WAITERS_MASK > 0 {
            self.release(round_of(old));
        }
    }

    /// The count reached zero in `round` with waiters registered: signal exactly the waiters
    /// of that round. Waiters that registered after a new `add` (a later round) stay, even
    /// when this release runs late, after the next round has begun and ended too: each
    /// round's release takes its own waiters only (Go forbids such reuse before `wait` has
    /// returned; here it is safe).
    #[cold]
    fn release(&self, round: u64) {
        let woken: Vec<Arc<Node>> = {
            let mut q = lock(&self.inner.waiters);
            let mut woken = Vec::new();
            q.retain(|(node, r)| {
                if *r == round {
                    woken.push(node.clone());
                    false
                } else {
                    true
                }
            });
            // Under the lock, so no waiter registers meanwhile. Release: pairs with a
            // waiter's Acquire load of the state, like the `done` above.
            self.inner
                .state
                .fetch_sub(woken.len() as u64, Ordering::Release);
            woken
        };
        woken.iter().for_each(|n| n.signal());
    }

    /// Parks until the count is zero (returns at once if it is).
    pub fn wait(&self) {
        if let Some((node, _)) = self.register() {
            node.wait(Wait::Group);
        }
    }

    /// [`wait`](WaitGroup::wait), for at most `timeout`: true if the count reached zero,
    /// false if it had not by then.
    ///
    /// # Examples
    ///
    /// ```
    /// use gort_runtime::sync::WaitGroup;
    /// use std::time::Duration;
    ///
    /// let wg = WaitGroup::new();
    /// wg.add(1);
    /// assert!(!wg.wait_timeout(Duration::from_millis(5)));
    /// wg.done();
    /// assert!(wg.wait_timeout(Duration::from_millis(5)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let Some((node, round)) = self.register() else {
            return true;
        };
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            node.wait(Wait::Group);
            return true;
        };
        if node.wait_until(deadline, Wait::Group) {
            return true;
        }
        // Withdraw, under the lock that keeps the list and the waiter count together, if the
        // count has not been through zero since we registered (same round, count not zero):
        // then no release counts us, and we leave the list and the count.
        let mut q = lock(&self.inner.waiters);
        // Acquire: as in `wait`, for the case where we report the count at zero.
        let s = self.inner.state.load(Ordering::Acquire);
        if s >> 32 != 0 && round_of(s) == round {
            if let Some(i) = q.iter().position(|(n, _)| Arc::ptr_eq(n, &node)) {
                q.remove(i);
                self.inner.state.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
        }
        // The count went through zero after we registered: our release is done or under
        // way (its signal may still arrive, harmlessly, as a spurious wake-up).
        true
    }

    /// Registers the caller as a waiter: `None` if the count is zero already, else its node
    /// and the round it registered in.
    fn register(&self) -> Option<(Arc<Node>, u64)> {
        // Acquire: pairs with the Release of the `done` that took the count to zero.
        if self.inner.state.load(Ordering::Acquire) >> 32 == 0 {
            return None;
        }
        let node = {
            let mut q = lock(&self.inner.waiters);
            let mut s = self.inner.state.load(Ordering::Acquire);
            loop {
                if s >> 32 == 0 {
                    return None;
                }
                if s & WAITERS_MASK == WAITERS_MASK {
                    panic!("gort::sync::WaitGroup::wait: more than 16,777,215 waiters");
                }
                // Acquire on both outcomes: as the load above. Under the lock, so that the
                // list and the low half move together (see `WgInner`).
                match self.inner.state.compare_exchange_weak(
                    s,
                    s + 1,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => s = now,
                }
            }
            let n = Node::new();
            let round = round_of(s);
            q.push_back((n.clone(), round));
            (n, round)
        };
        Some(node)
    }

    /// The current count.
    pub fn count(&self) -> usize {
        // Acquire: as in `wait`.
        (self.inner.state.load(Ordering::Acquire) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `done` that takes the count to zero, stopped before its release runs (the window
    /// between the count's decrement and the release's lock): returns the round to release.
    fn done_without_release(wg: &WaitGroup) -> u64 {
        let old = wg.inner.state.fetch_sub(COUNT_ONE, Ordering::AcqRel);
        assert_eq!(old >> 32, 1);
        round_of(old)
    }

    /// Releases that run late (after the group was reused: Go forbids it, gort must stay
    /// right) wake only their own round's waiters. Counting waiters instead of rounds, the
    /// second late release below woke the waiter of round three, whose count was not zero.
    #[test]
    fn a_late_release_wakes_only_its_own_rounds_waiters() {
        let wg = WaitGroup::new();
        wg.add(1);
        let (first, r1) = wg.register().expect("count is one");
        let late1 = done_without_release(&wg);
        assert_eq!(late1, r1);
        // Round two ends with no waiter of its own, while round one's release is pending.
        wg.add(1);
        let late2 = done_without_release(&wg);
        wg.add(1);
        let (third, r3) = wg.register().expect("count is one");
        assert!(r3 != late1 && r3 != late2);
        wg.release(late1);
        wg.release(late2);
        assert!(first.is_set(), "round one's waiter is woken");
        assert!(
            !third.is_set(),
            "round three's waiter woken before its count reached zero"
        );
        assert_eq!(wg.inner.state.load(Ordering::Relaxed) & WAITERS_MASK, 1);
        wg.done();
        assert!(third.is_set());
        assert_eq!(wg.inner.state.load(Ordering::Relaxed) & WAITERS_MASK, 0);
        assert!(lock(&wg.inner.waiters).is_empty());
    }
}
