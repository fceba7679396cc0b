//! The buffer of a bounded channel: a fixed ring of slots that senders and receivers claim
//! without a lock (Dmitry Vyukov's bounded MPMC queue, as crossbeam-channel's array flavour
//! uses it), plus two counts of the waiters parked on the channel, which are how a sender
//! learns, without the channel lock, that a receiver needs waking (and the other way round).
//!
//! # Positions and stamps
//!
//! `head` is where the next receive takes a value, `tail` where the next send puts one. A
//! position packs a *lap* (how many times the ring has wrapped) above an *index* into the
//! slots: `lap * one_lap + index`, where `one_lap` is a power of two above `2 * cap`, so
//! moving to the next slot is `+ 1`, or a jump to the next lap at the end of the ring, and no
//! division is needed. The bit just below `one_lap` (`mark`) is never part of an index; set in
//! `tail`, it means *closed*.
//!
//! Each slot carries a stamp that says whose turn it is:
//! - `stamp == p`: empty, waiting for the send at position `p`;
//! - `stamp == p + 1`: full, waiting for the receive at position `p`.
//!
//! A send at `tail == p` whose slot reads `p` claims the position by moving `tail` on (a
//! CAS: only one sender wins it), writes the value and stores `p + 1`. A receive at
//! `head == p` whose slot reads `p + 1` claims it the same way on `head`, reads the value
//! and stores `p + one_lap`, which hands the slot to the send one lap later. Senders contend
//! only on `tail`, receivers only on `head`, and the two sides meet only on the slots, so
//! under load a cache line moves between cores once per few messages instead of once per
//! operation as with one lock.
//!
//! A send that finds its slot still holding last lap's value (`stamp + one_lap == p + 1`)
//! looks at `head`: one lap behind `tail` means full; otherwise a receiver has claimed the
//! slot and is still reading, and the send waits for it (a few instructions). A receive that
//! finds its slot not yet written (`stamp == p`) looks at `tail`: equal means empty;
//! otherwise a sender is still writing.
//!
//! # Waiting counts
//!
//! `recv_waiting` and `send_waiting` mirror the lengths of the channel's two waiter queues
//! (updated under the channel lock, read without it). After a successful send a sender
//! reads `recv_waiting`, and wakes a receiver (under the lock) only if it is not zero;
//! receivers do the same for senders. The no-lost-wake-up argument (a Dekker pair, all four
//! accesses SeqCst):
//!
//! ```text
//!   sender:   CAS tail (SeqCst) ... load recv_waiting (SeqCst)
//!   receiver: store recv_waiting (SeqCst, after queueing) ... load tail (SeqCst)
//! ```
//!
//! In the single order of SeqCst operations, either the sender's load comes after the
//! receiver's store (it sees the waiter and wakes one) or the receiver's load of `tail`
//! comes after the sender's CAS (it sees the value and withdraws instead of parking). The
//! same holds with the roles swapped for `head` and `send_waiting`.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::{Backoff, CachePadded};

/// Channels with more slots than this keep a buffer that grows as it fills (the locked
/// flavour): a ring is allocated whole, up front, as Go allocates a channel's buffer, and a
/// `bounded(1 << 40)` used as "practically unbounded" must not ask for terabytes.
pub(super) const MAX_RING: usize = 1 << 20;

struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// Why a push failed; the value comes back.
pub(super) enum PushError<T> {
    Full(T),
    Closed(T),
}

/// Why a pop failed.
pub(super) enum PopError {
    Empty,
    /// Empty and closed: nothing will ever arrive.
    Closed,
}

/// One of a channel's two waiter queues.
#[derive(Clone, Copy)]
pub(super) enum Side {
    Recv,
    Send,
}

/// The two waiting counts, on their own cache line: read by every operation, written only
/// when a waiter queues or leaves.
#[derive(Default)]
struct Waiting {
    recv: AtomicUsize,
    send: AtomicUsize,
}

pub(super) struct Ring<T> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    waiting: CachePadded<Waiting>,
    slots: Box<[Slot<T>]>,
    one_lap: usize,
    mark: usize,
}

// SAFETY: values move between threads through the slots (T: Send); every slot access is
// ordered by its stamp, as the module docs explain.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Ring<T> {
    /// A ring of `cap` slots, `0 < cap <= MAX_RING`.
    pub(super) fn new(cap: usize) -> Ring<T> {
        assert!(cap > 0 && cap <= MAX_RING, "ring capacity out of range");
        let mark = (cap + 1).next_power_of_two();
        Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            waiting: CachePadded::new(Waiting::default()),
            // Slot i starts empty, waiting for the send at position i of lap 0.
            slots: (0..cap)
                .map(|i| Slot {
                    stamp: AtomicUsize::new(i),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            one_lap: mark * 2,
            mark,
        }
    }

    fn cap(&self) -> usize {
        self.slots.len()
    }

    /// The position after `p`.
    fn next(&self, p: usize) -> usize {
        let index = p & (self.mark - 1);
        if index + 1 < self.cap() {
            p + 1
        } else {
            (p & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    fn slot(&self, p: usize) -> &Slot<T> {
        &self.slots[p & (self.mark - 1)]
    }

    /// Puts `v` at the tail, unless the ring is full or closed.
    pub(super) fn try_push(&self, v: T) -> Result<(), PushError<T>> {
        let backoff = Backoff::new();
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            if tail & self.mark != 0 {
                return Err(PushError::Closed(v));
            }
            let slot = self.slot(tail);
            // Acquire: pairs with the Release store of the receive that emptied the slot
            // (its read of the old value happens before our write).
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                // SeqCst: the sender's half of the Dekker pair in the module docs (before
                // its load of `waiting.recv`).
                match self.tail.compare_exchange_weak(
                    tail,
                    self.next(tail),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS gave us position `tail`, whose slot is empty
                        // (its stamp said so): nobody else touches it until our stamp.
                        unsafe { (*slot.value.get()).write(v) };
                        // Release: publishes the value to the receive that sees this stamp.
                        slot.stamp.store(tail + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(t) => {
                        tail = t;
                        backoff.spin();
                    }
                }
            } else if stamp.wrapping_add(self.one_lap) == tail + 1 {
                // Last lap's value is still in the slot. SeqCst: a waiter's re-check reads
                // `head` after publishing its count, as in the module docs.
                let head = self.head.load(Ordering::SeqCst);
                if head.wrapping_add(self.one_lap) == tail {
                    return Err(PushError::Full(v));
                }
                // A receive claimed it and is still reading.
                backoff.spin();
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another send moved `tail` past us; catch up.
                backoff.snooze();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the value at the head, unless the ring is empty.
    pub(super) fn try_pop(&self) -> Result<T, PopError> {
        let backoff = Backoff::new();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(head);
            // Acquire: pairs with the Release store of the send that filled the slot.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head + 1 {
                // SeqCst: the receiver's half of the Dekker pair on `waiting.send`.
                match self.head.compare_exchange_weak(
                    head,
                    self.next(head),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS gave us position `head`, whose slot is full (its
                        // stamp said so, and the Acquire load made the value visible).
                        let v = unsafe { (*slot.value.get()).assume_init_read() };
                        // Release: our read happens before the next lap's write.
                        slot.stamp
                            .store(head.wrapping_add(self.one_lap), Ordering::Release);
                        return Ok(v);
                    }
                    Err(h) => {
                        head = h;
                        backoff.spin();
                    }
                }
            } else if stamp == head {
                // Not written in this lap. SeqCst: as in `try_push`.
                let tail = self.tail.load(Ordering::SeqCst);
                if tail & !self.mark == head {
                    return Err(if tail & self.mark != 0 {
                        PopError::Closed
                    } else {
                        PopError::Empty
                    });
                }
                // A send claimed the position and is still writing.
                backoff.spin();
                head = self.head.load(Ordering::Relaxed);
            } else {
                backoff.snooze();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Marks the ring closed; false if it already was.
    pub(super) fn close(&self) -> bool {
        // SeqCst: a waiter's re-check (`is_closed`, SeqCst) after it published its count
        // either sees the mark or is seen by the closer, which wakes every waiter after this.
        self.tail.fetch_or(self.mark, Ordering::SeqCst) & self.mark == 0
    }

    pub(super) fn is_closed(&self) -> bool {
        // SeqCst: see `close`.
        self.tail.load(Ordering::SeqCst) & self.mark != 0
    }

    /// No value to take (a waiting receiver's re-check; SeqCst per the module docs).
    pub(super) fn is_empty(&self) -> bool {
        let head = self.head.load(Ordering::SeqCst);
        let tail = self.tail.load(Ordering::SeqCst);
        tail & !self.mark == head
    }

    /// No slot to fill (a waiting sender's re-check; SeqCst per the module docs).
    pub(super) fn is_full(&self) -> bool {
        let tail = self.tail.load(Ordering::SeqCst);
        let head = self.head.load(Ordering::SeqCst);
        head.wrapping_add(self.one_lap) == tail & !self.mark
    }

    /// Values in the ring (a snapshot).
    pub(super) fn len(&self) -> usize {
        loop {
            // SeqCst: the three loads read one consistent moment when `tail` did not move.
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                return self.distance(head, tail & !self.mark);
            }
        }
    }

    /// The waiting count of `side`'s queue.
    pub(super) fn count(&self, side: Side) -> &AtomicUsize {
        match side {
            Side::Recv => &self.waiting.recv,
            Side::Send => &self.waiting.send,
        }
    }

    /// Whether an operation on `side` could complete (or fail as closed) now.
    pub(super) fn ready(&self, side: Side) -> bool {
        self.is_closed()
            || match side {
                Side::Recv => !self.is_empty(),
                Side::Send => !self.is_full(),
            }
    }

    /// Values between positions `head` and `tail` (unmarked).
    fn distance(&self, head: usize, tail: usize) -> usize {
        let hix = head & (self.mark - 1);
        let tix = tail & (self.mark - 1);
        if hix < tix {
            tix - hix
        } else if hix > tix {
            self.cap() - hix + tix
        } else if tail == head {
            0
        } else {
            self.cap()
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Nobody else is left: every value between head and tail was sent and not taken.
        let head = *self.head.get_mut();
        let tail = *self.tail.get_mut() & !self.mark;
        let mut p = head;
        let n = self.distance(head, tail);
        let values = (0..n).map(|_| {
            let slot = &mut self.slots[p & (self.mark - 1)];
            // SAFETY: positions from head to tail hold values, each read out once.
            let v = unsafe { slot.value.get_mut().assume_init_read() };
            p = self.next(p);
            v
        });
        // Each value's drop contained (see `drop_all`).
        super::drop_all(values);
    }
}
