//! Timers: one heap for the whole runtime, fired by M's.
//!
//! **Why one structure.** Go keeps a heap per P so that timer-heavy programs scale across
//! many cores; it then needs timer stealing and a careful hand-over when P's go idle. On a
//! handful of P's one structure under one short lock is simpler to reason about; the
//! earliest deadline is mirrored in an atomic, so an M checks for due timers without the
//! lock.
//!
//! **Who fires timers.** An M looks for due timers when its local run queue is empty and on
//! every 61st schedule (with the global-queue check). An idle M sleeps until the next
//! deadline: the first M to go idle becomes the *timer sleeper* and parks with a timeout;
//! adding a timer earlier than the current earliest unparks it so that it re-arms. Other idle
//! M's park without a timeout. If no M is idle, a running one will find the timer on its
//! next check (cooperative scheduling: a G that computes for a long time without blocking
//! delays the timers of its P's M, see docs/CAVEATS.md).
//!
//! **Near and far.** Only timers due within the next bucket or two (about a millisecond
//! each) sit in the heap; later ones wait in per-bucket lists, in order of bucket, and move
//! into the heap when their bucket comes near. A million sleepers due over the next 100 ms
//! thus cost an append each on the way in and a pop from a heap of about ten thousand on the
//! way out, instead of pops from a million-entry heap whose every level is a cache miss
//! (which held their wake-ups up to 3 s late). The earliest-deadline mirror counts a waiting
//! bucket by its start, a lower bound: reaching it makes an M move the bucket in and look
//! again.
//!
//! **Cancellation.** A timer that parks a G (`park_deadline`) is cancelled when the G is
//! woken early, and the timer of a `time::after` or `time::tick` channel when its last
//! receiver goes; the entry stays in the heap (lazy deletion) until it comes due or until
//! cancelled entries make up half of a large heap, when the heap is rebuilt without them. So
//! a loop that selects on a fresh `after(1 h)` each time holds at most a couple of thousand
//! dead entries, not one per iteration for an hour.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::park::Unparker;

const PENDING: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;

/// The state of a cancellable timer, shared by the heap entry and its owner.
pub(crate) struct TimerState(AtomicU8);

impl TimerState {
    pub(crate) fn new() -> Arc<TimerState> {
        Arc::new(TimerState(AtomicU8::new(PENDING)))
    }

    /// Marks the timer fired unless it was cancelled. True if it was still pending.
    pub(crate) fn fire(&self) -> bool {
        self.0
            .compare_exchange(PENDING, FIRED, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Cancels the timer unless it already fired. True if it was still pending.
    pub(crate) fn cancel(&self) -> bool {
        self.0
            .compare_exchange(PENDING, CANCELLED, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// What a timer does when it comes due.
pub(crate) enum Action {
    /// Unpark a G or thread (unless cancelled meanwhile).
    Wake(Unparker, Arc<TimerState>),
    /// Run a short callback (on an M, outside any lock; it must not block), unless the
    /// state was cancelled meanwhile (the timer channels of `time::after` and `time::tick`
    /// are, when their last receiver goes; a callback that fires once marks the state fired
    /// itself). Only the runtime's own callbacks (a `try_send` of an `Instant`), never user
    /// code, so none is expected to panic; one that did would be a gort bug, stopped by the
    /// M's `AbortOnUnwind` with a message (see `unwind.rs`).
    Call(Box<dyn FnOnce() + Send>, Arc<TimerState>),
}

struct Entry {
    when: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.when, self.seq) == (o.when, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.when, o.seq).cmp(&(self.when, self.seq))
    }
}

impl Entry {
    fn cancelled(&self) -> bool {
        match &self.action {
            Action::Wake(_, st) | Action::Call(_, st) => st.0.load(Ordering::Relaxed) == CANCELLED,
        }
    }
}

/// Timers wait outside the heap in buckets of `1 << BUCKET_SHIFT` ns (about 1.05 ms).
const BUCKET_SHIFT: u32 = 20;

struct Heap {
    /// Timers due up to the end of bucket `horizon`.
    heap: BinaryHeap<Entry>,
    /// Timers due later, by bucket (`when >> BUCKET_SHIFT`), each bucket in arrival order.
    later: BTreeMap<u64, Vec<Entry>>,
    /// Buckets up to this one are in `heap` (none of them in `later`).
    horizon: u64,
    seq: u64,
    /// The idle M sleeping until the earliest deadline, if any.
    sleeper: Option<Thread>,
}

/// The runtime's timers.
pub(crate) struct Timers {
    base: Instant,
    heap: Mutex<Heap>,
    /// Earliest deadline (nanoseconds since `base`), or `u64::MAX`. Written under the lock;
    /// read without it (Relaxed: a stale value only delays a check to the next one, or costs
    /// a needless lock).
    next: AtomicU64,
    /// Entries cancelled since the last rebuild (a hint for when to rebuild).
    cancelled: AtomicUsize,
}

fn lock(m: &Mutex<Heap>) -> MutexGuard<'_, Heap> {
    // Nothing panics while holding the lock; recover from poisoning anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Heap {
    fn push(&mut self, e: Entry) {
        let bucket = e.when >> BUCKET_SHIFT;
        if bucket <= self.horizon {
            self.heap.push(e);
        } else {
            self.later.entry(bucket).or_default().push(e);
        }
    }

    /// Moves the buckets due by the end of the bucket after `now`'s into the heap.
    fn advance(&mut self, now: u64) {
        let horizon = (now >> BUCKET_SHIFT) + 1;
        if horizon <= self.horizon {
            return;
        }
        self.horizon = horizon;
        while let Some(bucket) = self.later.first_entry() {
            if *bucket.key() > horizon {
                break;
            }
            self.heap.extend(bucket.remove());
        }
    }

    /// The earliest deadline, or a lower bound of it (a waiting bucket's start).
    fn earliest(&self) -> u64 {
        let near = self.heap.peek().map_or(u64::MAX, |e| e.when);
        let far = self
            .later
            .keys()
            .next()
            .map_or(u64::MAX, |b| b << BUCKET_SHIFT);
        near.min(far)
    }

    fn len(&self) -> usize {
        self.heap.len() + self.later.values().map(Vec::len).sum::<usize>()
    }
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            base: Instant::now(),
            heap: Mutex::new(Heap {
                heap: BinaryHeap::new(),
                later: BTreeMap::new(),
                horizon: 0,
                seq: 0,
                sleeper: None,
            }),
            next: AtomicU64::new(u64::MAX),
            cancelled: AtomicUsize::new(0),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Adds a timer firing at `when`. Returns true if it is now the earliest, and no idle M
    /// sleeps on the timers (the caller should make sure an M will look).
    pub(crate) fn add(&self, when: Instant, action: Action) -> bool {
        let when = self.nanos(when);
        let mut h = lock(&self.heap);
        h.seq += 1;
        let seq = h.seq;
        h.push(Entry { when, seq, action });
        let earliest = when < self.next.load(Ordering::Relaxed);
        if earliest {
            self.next.store(when, Ordering::Relaxed);
        }
        let sleeper = if earliest { h.sleeper.clone() } else { None };
        let need_m = earliest && h.sleeper.is_none();
        drop(h);
        if let Some(t) = sleeper {
            // Re-arm: the sleeper recomputes its timeout (std's park token makes this
            // safe even if it has not started sleeping yet).
            t.unpark();
            // It may sleep in the poller instead: break that sleep. SeqCst fence: pairs
            // with the one in `Poller::sleep` (the new `next` above, then its flag).
            std::sync::atomic::fence(Ordering::SeqCst);
            crate::net::wake_sleeper();
        }
        need_m
    }

    /// Unparks the timer sleeper, if any, so that it looks again at how to sleep (the
    /// poller was just created).
    pub(crate) fn wake_sleeper(&self) {
        if let Some(t) = lock(&self.heap).sleeper.clone() {
            t.unpark();
        }
    }

    /// Timer entries held: pending ones and cancelled ones not yet swept.
    pub(crate) fn len(&self) -> usize {
        lock(&self.heap).len()
    }

    /// Notes that a timer was cancelled, rebuilding the heap if
    /// cancelled entries have piled up.
    pub(crate) fn note_cancelled(&self) {
        let n = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        if n < 1024 {
            return;
        }
        let mut h = lock(&self.heap);
        if n * 2 < h.len() {
            return;
        }
        let old = std::mem::take(&mut h.heap);
        h.heap = old.into_iter().filter(|e| !e.cancelled()).collect();
        for bucket in h.later.values_mut() {
            bucket.retain(|e| !e.cancelled());
        }
        h.later.retain(|_, bucket| !bucket.is_empty());
        self.cancelled.store(0, Ordering::Relaxed);
        self.next.store(h.earliest(), Ordering::Relaxed);
    }

    /// Fires every due timer. Returns how many woke something or ran.
    pub(crate) fn run_due(&self) -> usize {
        if self.next.load(Ordering::Relaxed) == u64::MAX {
            return 0;
        }
        let now = self.nanos(Instant::now());
        if self.next.load(Ordering::Relaxed) > now {
            return 0;
        }
        let mut due = Vec::new();
        {
            let mut h = lock(&self.heap);
            h.advance(now);
            while h.heap.peek().is_some_and(|e| e.when <= now) {
                due.push(h.heap.pop().expect("peeked"));
            }
            self.next.store(h.earliest(), Ordering::Relaxed);
        }
        let mut fired = 0;
        for e in due {
            match e.action {
                Action::Wake(u, st) => {
                    if st
                        .0
                        .compare_exchange(PENDING, FIRED, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        // The most overdue runs next (on this P's `runnext`, or before any
                        // queue if this M has no P), as Go readies a timer's G: otherwise a
                        // sleep behind 256 queued G's wakes their whole run late. The rest
                        // go to the tail: a million sleepers waking at once should not churn
                        // `runnext`.
                        if fired == 0 {
                            u.unpark_urgent();
                        } else {
                            u.unpark(false);
                        }
                        fired += 1;
                    }
                }
                Action::Call(f, st) => {
                    if st.0.load(Ordering::Relaxed) != CANCELLED {
                        f();
                        fired += 1;
                    }
                }
            }
        }
        fired
    }

    /// Time until the earliest deadline, if any timer is pending.
    pub(crate) fn until_next(&self) -> Option<Duration> {
        let next = self.next.load(Ordering::Relaxed);
        if next == u64::MAX {
            return None;
        }
        let now = self.nanos(Instant::now());
        Some(Duration::from_nanos(next.saturating_sub(now)))
    }

    /// Makes the calling idle M the timer sleeper if there is none. True if it is now.
    pub(crate) fn claim_sleeper(&self) -> bool {
        let mut h = lock(&self.heap);
        if h.sleeper.is_some() {
            return false;
        }
        h.sleeper = Some(std::thread::current());
        true
    }

    /// The timer sleeper leaves (it got a P).
    pub(crate) fn release_sleeper(&self) {
        lock(&self.heap).sleeper = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// Timers in the past, in the heap's buckets and in later buckets: every one fires
    /// once, none early, in deadline order.
    #[test]
    fn near_and_far_timers_fire_once_in_order() {
        let t = Timers::new();
        let fired: Arc<StdMutex<Vec<(u64, usize)>>> = Arc::default();
        let start = Instant::now();
        // Deadlines from 1 ms in the past to 12 ms ahead (about a dozen buckets), out of
        // order, with ties.
        for i in 0..600usize {
            let offset_us = ((i * 7919) % 13_000) as i64 - 1_000;
            let when = if offset_us < 0 {
                start - Duration::from_micros(offset_us.unsigned_abs())
            } else {
                start + Duration::from_micros(offset_us as u64)
            };
            let at = t.nanos(when);
            let f = fired.clone();
            let base = t.base;
            t.add(
                when,
                Action::Call(
                    Box::new(move || {
                        let now = base.elapsed().as_nanos() as u64;
                        assert!(now >= at, "timer {i} fired early");
                        f.lock().unwrap().push((at, i));
                    }),
                    TimerState::new(),
                ),
            );
        }
        let mut total = 0;
        while total < 600 {
            total += t.run_due();
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(t.run_due(), 0);
        assert_eq!(t.next.load(Ordering::Relaxed), u64::MAX);
        let fired = fired.lock().unwrap();
        assert_eq!(fired.len(), 600);
        let mut seen = vec![false; 600];
        for &(_, i) in fired.iter() {
            assert!(
                !std::mem::replace(&mut seen[i], true),
                "timer {i} fired twice"
            );
        }
        // Each `run_due` fires its batch in order, and batches follow each other in time.
        assert!(fired.windows(2).all(|w| w[0].0 <= w[1].0), "out of order");
    }

    #[test]
    fn cancelled_wakes_are_skipped_and_rebuilt_away() {
        let t = Timers::new();
        let far = Instant::now() + Duration::from_secs(3600);
        let near = Instant::now() + Duration::from_micros(100);
        let mut states = Vec::new();
        for i in 0..4000 {
            let st = TimerState::new();
            let when = if i % 2 == 0 { far } else { near };
            t.add(
                when,
                Action::Wake(
                    Unparker::Thread(crate::deadlock::plain_current()),
                    st.clone(),
                ),
            );
            states.push(st);
        }
        for st in &states {
            assert!(st.cancel());
            t.note_cancelled();
        }
        // Rebuilds (one per 1,024 cancellations, once they are half of all timers) removed
        // them from the heap and the buckets alike; fewer than 1,024 wait for the next one.
        let left = lock(&t.heap).len();
        assert!(left < 1024, "{left} cancelled entries kept");
        // The near ones come due: cancelled, they wake nobody.
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(t.run_due(), 0);
    }
}
