//! [`Semaphore`]: a counting semaphore with FIFO waiters, borrowed and owned permits.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use super::waiter::lock;
use crate::park::{park, park_until, Unparker};

/// In `Semaphore::state`: the wait queue is not empty. Set and cleared under the queue lock;
/// while it is set the count is 0 (every freed permit goes to a waiter), so the fast paths,
/// which run only while it is clear, never overtake a waiter.
const WAITING: usize = 1;
/// One permit in `Semaphore::state` (the count sits above the flag).
const ONE: usize = 2;

/// A waiter's state: waiting, granted its permits, or gone (timed out).
const W_WAITING: u8 = 0;
const W_GRANTED: u8 = 1;
const W_CANCELLED: u8 = 2;

/// A queued acquirer of `need` permits.
struct Waiter {
    unparker: Unparker,
    /// `W_WAITING` until a release grants the last permit (`W_GRANTED`, Release: pairs with
    /// the waiter's Acquire) or the waiter times out (`W_CANCELLED`, a CAS by the waiter).
    state: AtomicU8,
    need: usize,
    /// Permits handed over so far (written under the queue lock; a waiter that needs several
    /// may get them over several releases). A waiter that times out takes them back under
    /// the lock and releases them.
    got: AtomicUsize,
}

/// The wait queue. A waiter that times out only marks itself cancelled (no search through
/// the queue): releases skip and drop cancelled waiters, and the queue is compacted when
/// they make up half of it, so that timeouts cost O(1) each however many wait.
struct Queue {
    q: VecDeque<Arc<Waiter>>,
    /// Cancelled waiters still in `q` (a hint for compaction).
    cancelled: usize,
}

/// A counting semaphore: at most `permits` holders at once. Waiters are served in FIFO
/// order, each freed permit going straight to the first of them (a waiter for several
/// permits holds back those behind it until it has them all, as in tokio).
///
/// `acquire` and a permit's release are one atomic operation each while nobody waits; only
/// waiting takes the internal lock. A waiter that times out leaves in O(1).
///
/// Permits borrow the semaphore ([`SemaphorePermit`]) or, from an `Arc<Semaphore>`, own a
/// reference to it ([`OwnedSemaphorePermit`]): Go's pattern of acquiring in the spawner and
/// releasing in the spawned green thread.
///
/// # Examples
///
/// ```
/// use gort_runtime::sync::Semaphore;
/// use std::sync::Arc;
///
/// let s = Semaphore::new(2);
/// let a = s.acquire();
/// let b = s.acquire();
/// assert!(s.try_acquire().is_none());
/// drop(a);
/// assert!(s.try_acquire().is_some());
/// # drop(b);
///
/// // At most 4 green threads at once: acquire before spawning, release when done.
/// let sem = Arc::new(Semaphore::new(4));
/// let hs: Vec<_> = (0..16)
///     .map(|i| {
///         let permit = sem.clone().acquire_owned();
///         gort_runtime::go!(move || {
///             let _permit = permit; // released when the green thread ends
///             i * 2
///         })
///     })
///     .collect();
/// let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, 240);
/// assert_eq!(sem.available_permits(), 4);
/// ```
pub struct Semaphore {
    /// `permits * ONE | WAITING`.
    state: AtomicUsize,
    queue: StdMutex<Queue>,
}

/// Permits of a [`Semaphore`], borrowing it; released when dropped.
#[derive(Debug)]
#[must_use = "the permits are released at once if the permit is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: usize,
}

/// Permits of a [`Semaphore`] held through an `Arc`, so that the permit can move to another
/// green thread; released when dropped.
#[derive(Debug)]
#[must_use = "the permits are released at once if the permit is dropped"]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    permits: usize,
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
            queue: StdMutex::new(Queue {
                q: VecDeque::new(),
                cancelled: 0,
            }),
        }
    }

    /// Takes a permit, parking until one is free.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.acquire_many(1)
    }

    /// Takes `n` permits at once, parking until they are free (they are taken as they are
    /// released, in FIFO order with the other waiters). Waits forever if the semaphore
    /// never holds `n`.
    ///
    /// # Panics
    /// If `n` exceeds [`Semaphore::MAX_PERMITS`].
    pub fn acquire_many(&self, n: usize) -> SemaphorePermit<'_> {
        self.take(n, None);
        SemaphorePermit {
            sem: self,
            permits: n,
        }
    }

    /// Takes a permit if one is free now (and nobody waits).
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are free now (and nobody waits).
    pub fn try_acquire_many(&self, n: usize) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit built and dropped would release its permits.
        self.try_take(n).then(|| SemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// Takes a permit, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.acquire_many_timeout(1, timeout)
    }

    /// Takes `n` permits, waiting at most `timeout`; none are kept if not all came in time.
    pub fn acquire_many_timeout(&self, n: usize, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.take(n, Some(timeout)).then(|| SemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// [`acquire`](Semaphore::acquire), for a permit that owns a reference to the
    /// semaphore (it can move to another green thread).
    pub fn acquire_owned(self: Arc<Self>) -> OwnedSemaphorePermit {
        self.acquire_many_owned(1)
    }

    /// [`acquire_many`](Semaphore::acquire_many), owned.
    pub fn acquire_many_owned(self: Arc<Self>, n: usize) -> OwnedSemaphorePermit {
        self.take(n, None);
        OwnedSemaphorePermit {
            sem: self,
            permits: n,
        }
    }

    /// [`try_acquire`](Semaphore::try_acquire), owned.
    pub fn try_acquire_owned(self: Arc<Self>) -> Option<OwnedSemaphorePermit> {
        self.try_acquire_many_owned(1)
    }

    /// [`try_acquire_many`](Semaphore::try_acquire_many), owned.
    pub fn try_acquire_many_owned(self: Arc<Self>, n: usize) -> Option<OwnedSemaphorePermit> {
        self.try_take(n).then(|| OwnedSemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// [`acquire_timeout`](Semaphore::acquire_timeout), owned.
    pub fn acquire_owned_timeout(
        self: Arc<Self>,
        timeout: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        self.acquire_many_owned_timeout(1, timeout)
    }

    /// [`acquire_many_timeout`](Semaphore::acquire_many_timeout), owned.
    pub fn acquire_many_owned_timeout(
        self: Arc<Self>,
        n: usize,
        timeout: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        self.take(n, Some(timeout)).then(|| OwnedSemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// `n` permits in the state word's units.
    fn units(n: usize) -> usize {
        assert!(
            n <= Semaphore::MAX_PERMITS,
            "Semaphore: more than Semaphore::MAX_PERMITS permits asked for"
        );
        n * ONE
    }

    /// The fast path: takes `n` permits if they are free and nobody waits.
    fn try_take(&self, n: usize) -> bool {
        let need = Self::units(n);
        let mut s = self.state.load(Ordering::Relaxed);
        while s & WAITING == 0 && s >= need {
            // Acquire: pairs with the Release of the release that freed the permits.
            match self.state.compare_exchange_weak(
                s,
                s - need,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(x) => s = x,
            }
        }
        false
    }

    /// Takes `n` permits, waiting at most `timeout` (`None`: forever). False if they did
    /// not all come in time (then none are kept).
    fn take(&self, n: usize, timeout: Option<Duration>) -> bool {
        if n == 0 || self.try_take(n) {
            return true;
        }
        let w = match self.take_or_queue(n) {
            Ok(()) => return true,
            Err(w) => w,
        };
        // An unrepresentable deadline is no deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        crate::dump::set_wait(crate::dump::Wait::Semaphore);
        let mut gave_way = false;
        loop {
            // Acquire: pairs with the Release CAS that granted the permits.
            if w.state.load(Ordering::Acquire) == W_GRANTED {
                return true;
            }
            match deadline {
                None => park(),
                Some(d) if park_until(d, &mut gave_way) => {}
                Some(_) => break,
            }
        }
        // Timed out: withdraw, unless the permits were granted just now. Acquire on failure:
        // pairs with the Release CAS that granted them (they are ours after all).
        if w.state
            .compare_exchange(W_WAITING, W_CANCELLED, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            return true;
        }
        // Give back what came so far (grants happen under the lock, so does this).
        let got = {
            let mut q = lock(&self.queue);
            q.cancelled += 1;
            w.got.swap(0, Ordering::Relaxed)
        };
        if got > 0 {
            self.add_permits(got);
        }
        false
    }

    /// Takes `n` free permits (`Ok`), or queues the caller (`Err` with its waiter) when
    /// they are not free or others already wait (FIFO: no overtaking). A queued waiter
    /// takes the permits that are free at once, and waits for the rest.
    fn take_or_queue(&self, n: usize) -> Result<(), Arc<Waiter>> {
        let mut q = lock(&self.queue);
        let avail = loop {
            if self.try_take(n) {
                return Ok(());
            }
            // Not enough for us: raise the flag, taking what is free (nothing if the flag
            // is already up, since the count is then 0). A release either saw the flag and
            // comes through the queue lock, or changed the state first and we look again.
            let s = self.state.load(Ordering::Relaxed);
            let avail = if s & WAITING != 0 { 0 } else { s / ONE };
            // Acquire: the permits we take, as in `try_take`.
            if self
                .state
                .compare_exchange(s, WAITING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break avail;
            }
        };
        if q.cancelled >= 64 && q.cancelled * 2 >= q.q.len() {
            q.q.retain(|w| w.state.load(Ordering::Relaxed) != W_CANCELLED);
            q.cancelled = 0;
        }
        let w = Arc::new(Waiter {
            unparker: Unparker::current(),
            state: AtomicU8::new(W_WAITING),
            need: n,
            got: AtomicUsize::new(avail),
        });
        q.q.push_back(w.clone());
        Err(w)
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
        let mut wake = Vec::new();
        {
            let mut q = lock(&self.queue);
            let mut left = n;
            while left > 0 {
                let Some(w) = q.q.front() else { break };
                if w.state.load(Ordering::Relaxed) == W_CANCELLED {
                    // Gone (it gives back what it got itself, under this lock).
                    q.q.pop_front();
                    q.cancelled = q.cancelled.saturating_sub(1);
                    continue;
                }
                let got = w.got.load(Ordering::Relaxed);
                let give = left.min(w.need - got);
                w.got.store(got + give, Ordering::Relaxed);
                left -= give;
                if got + give < w.need {
                    break; // all given, to a waiter that needs more
                }
                let w = q.q.pop_front().expect("the front waiter");
                // Release: hands the permits over (pairs with the waiter's Acquire load).
                if w.state
                    .compare_exchange(W_WAITING, W_GRANTED, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    wake.push(w);
                }
                // Else it timed out just now: it takes `got` back itself under this lock,
                // once we drop it, and releases it.
            }
            if q.q.is_empty() {
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
                q.cancelled = 0;
            }
        }
        for w in wake {
            w.unparker.unpark(true);
        }
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.state.load(Ordering::Relaxed) / ONE
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the permits taken for good (the semaphore has that many fewer from now on).
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.add_permits(self.permits);
    }
}

impl OwnedSemaphorePermit {
    /// Keeps the permits taken for good (the semaphore has that many fewer from now on).
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// The semaphore the permits belong to.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        self.sem.add_permits(self.permits);
    }
}
