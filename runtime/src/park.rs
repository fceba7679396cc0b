//! Parking: the one primitive every blocking operation stands on.
//!
//! [`park`] blocks the caller until a matching [`Unparker::unpark`]; it works the same for a
//! G (which gives its M back to the scheduler) and for a plain OS thread (which blocks in
//! `std::thread::park`). Both follow std's *token* semantics: an `unpark` that arrives
//! before the `park` makes that `park` return at once, and `park` may return spuriously,
//! so callers re-check their condition in a loop.
//!
//! # The G protocol
//!
//! A G's state word moves like this (see `g.rs` for the constants):
//!
//! ```text
//!            park(): no token, switch off the stack;   unpark()
//!            then the M, with the G off its stack
//!   ACTIVE ------------------------------------> PARKED ---------> ACTIVE + queued
//!     |  ^                                                          (ready)
//!     |  | park() (or the M, if the token came during the switch)
//!     |  +---------- NOTIFIED <--- unpark() while ACTIVE
//!     +-----------------^
//! ```
//!
//! The race to get right is an `unpark` arriving while the G is still switching off its
//! stack. The G never decides whether it really sleeps: if no token waits, it switches to
//! its M without touching the word (the switch takes no locked instruction); only the M,
//! with the G fully off its stack, tries ACTIVE → PARKED. If an `unpark` got in first
//! (ACTIVE → NOTIFIED), the CAS fails and the M resumes the G at once. If the M's CAS wins,
//! the G keeps the M's reference to itself, and the `unpark` that moves PARKED → ACTIVE is
//! the only one that queues it, with that reference. So a G is resumed by at most one M at
//! a time, and a wake-up is never lost: every `unpark` either leaves a token the G (or its M)
//! will consume, or finds it PARKED and queues it.

use std::sync::Arc;

use crate::deadlock::{plain_current, PlainThread};
use crate::protocol::park_word;
use std::time::Instant;

use crate::g::{GRef, Suspend};
use crate::sched::{current_g, sched, suspend};
use crate::timer::{Action, TimerState};

/// The caller's own identity, without a counted reference: valid only while the caller is
/// blocked in an operation whose completer upgrades it (under a lock that the caller's
/// departure also takes) before the caller can leave.
pub(crate) enum Waker {
    /// A green thread (not counted).
    G(*const crate::g::G),
    /// An OS thread.
    Thread(Arc<PlainThread>),
}

impl Waker {
    /// The caller: its G when it runs on one, else its OS thread.
    pub(crate) fn current() -> Waker {
        let g = current_g();
        if g.is_null() {
            Waker::Thread(plain_current())
        } else {
            Waker::G(g)
        }
    }

    /// A counted handle to the same G or thread.
    ///
    /// # Safety
    /// The G (if it is one) is alive: its owner is still blocked waiting for the caller.
    pub(crate) unsafe fn upgrade(&self) -> Unparker {
        match self {
            // SAFETY: alive, per the caller.
            Waker::G(g) => Unparker::G(unsafe { GRef::clone_from_ptr(*g) }),
            Waker::Thread(t) => Unparker::Thread(t.clone()),
        }
    }
}

/// A handle that wakes one parked G or OS thread.
#[derive(Clone)]
pub(crate) enum Unparker {
    /// A green thread.
    G(GRef),
    /// An OS thread outside the runtime.
    Thread(Arc<PlainThread>),
    /// An async task (a `JoinHandle` awaited from async code): its waker is woken (boxed:
    /// the G keeps an `Option<Unparker>`, which stays two words).
    Task(Box<std::task::Waker>),
}

impl Unparker {
    /// The handle of the caller: its G when it runs on one, else its OS thread.
    pub(crate) fn current() -> Unparker {
        let g = current_g();
        if g.is_null() {
            Unparker::Thread(plain_current())
        } else {
            // SAFETY: `g` is the running G, kept alive by the M running it.
            Unparker::G(unsafe { GRef::clone_from_ptr(g) })
        }
    }

    /// Wakes the parked G or thread, or leaves it a token if it is not parked yet.
    ///
    /// With `run_next`, a woken G runs next on the waker's P: a hand-off, what makes two
    /// G's talking to each other fast. Without, it goes to the tail of the waker's run
    /// queue, behind the G's already there: a finishing G wakes its joiner this way, so a
    /// G joining many others finds the rest finished instead of parking on each.
    pub(crate) fn unpark(&self, run_next: bool) {
        match self {
            Unparker::Thread(t) => t.unpark(),
            Unparker::Task(w) => w.wake_by_ref(),
            Unparker::G(g) => {
                if unpark_g(g) {
                    // SAFETY: we won PARKED -> ACTIVE: the reference the G kept when it
                    // parked is ours now (see `M::execute`).
                    sched().ready(unsafe { GRef::from_raw(g.as_ptr().cast_mut()) }, run_next);
                }
            }
        }
    }
}

impl Unparker {
    /// `unpark` for the G a timer woke: it runs next (see `Sched::ready_urgent`).
    pub(crate) fn unpark_urgent(&self) {
        match self {
            Unparker::G(g) => {
                if unpark_g(g) {
                    // SAFETY: as in `unpark`: the reference the G kept when it parked.
                    sched().ready_urgent(unsafe { GRef::from_raw(g.as_ptr().cast_mut()) });
                }
            }
            other => other.unpark(true),
        }
    }

    /// `unpark` for a batch: a G that must now be queued is pushed onto `out` (for
    /// `Sched::inject`) instead of being queued one by one; a thread is unparked at once.
    pub(crate) fn unpark_into(self, out: &mut Vec<GRef>) {
        match self {
            Unparker::Thread(t) => t.unpark(),
            Unparker::Task(w) => (*w).wake(),
            Unparker::G(g) => {
                if unpark_g(&g) {
                    // SAFETY: as in `unpark`: the reference the G kept when it parked.
                    out.push(unsafe { GRef::from_raw(g.as_ptr().cast_mut()) });
                }
            }
        }
    }
}

/// The state-word half of `unpark` (`protocol::park_word::unpark`, model-checked in
/// tests/loom.rs). True if the G was PARKED and must now be queued.
#[inline(always)]
fn unpark_g(g: &GRef) -> bool {
    park_word::unpark(&g.state)
}

/// Blocks the caller until an `unpark` (or returns at once if a token is waiting; may also
/// return spuriously).
pub(crate) fn park() {
    let g = current_g();
    if g.is_null() {
        // Counted for the deadlock report (`deadlock.rs`).
        crate::deadlock::park_plain();
        return;
    }
    // SAFETY: `g` is the G running on this thread.
    unsafe { park_g(g) }
}

/// `park` for a caller that already knows its G (saves a thread-local look-up).
///
/// # Safety
/// `g` is the G running on this thread.
#[inline(always)]
pub(crate) unsafe fn park_g(g: *const crate::g::G) {
    // SAFETY: `g` is the running G; it stays alive while it runs.
    let state = unsafe { &(*g).state };
    // The state word's protocol: `protocol::park_word`, model-checked in tests/loom.rs.
    // A token waiting: consume it and go on.
    if park_word::take_token(state) {
        return;
    }
    // A G whose stack went deep queues itself for shrinking (one cache line compared in
    // the common case).
    // SAFETY: `g` is the G running on this thread.
    unsafe { crate::shrink::on_park(g) };
    // The start of the wait, for the dump (a relaxed load and store).
    // SAFETY: `g` is the G running on this thread.
    unsafe { (*g).stamp_wait(sched().coarse_now()) };
    // Off the stack; the M decides (`park_word::commit`).
    // SAFETY: `g` is the G running on this thread.
    unsafe { suspend(g, Suspend::Park) }
}

/// Blocks the caller until an `unpark` or until `deadline` (or returns at once if a token
/// is waiting; may also return spuriously). The caller checks the clock and its condition.
pub(crate) fn park_deadline(deadline: Instant) {
    let g = current_g();
    if g.is_null() {
        let now = Instant::now();
        if deadline > now {
            std::thread::park_timeout(deadline - now);
        }
        return;
    }
    let s = sched();
    let state = TimerState::new();
    if s.timers
        .add(deadline, Action::Wake(Unparker::current(), state.clone()))
    {
        // The earliest timer and no M sleeping on the timers: make sure one looks.
        s.wakep(true);
    }
    park();
    if state.cancel() {
        s.timers.note_cancelled();
    }
}

/// One step of a timed wait, between two looks at its condition: parks until `deadline`
/// (`park_deadline`) and returns true; past the deadline, yields once and returns true if
/// the wait has neither parked nor yielded yet (`gave_way`), else returns false: give up.
///
/// So a wait that times out is a scheduling point even when its deadline passed before it
/// could park (a timeout of a few nanoseconds): a std thread's timed wait gives up its CPU,
/// and Go's parks. Without the yield, a G that retries such a wait in a loop holds its P,
/// and the G it waits for, queued behind it, never runs.
pub(crate) fn park_until(deadline: Instant, gave_way: &mut bool) -> bool {
    if Instant::now() < deadline {
        park_deadline(deadline);
    } else if *gave_way {
        return false;
    } else {
        yield_now();
    }
    *gave_way = true;
    true
}

/// Yields the running G to the scheduler (or the OS thread to the OS).
pub(crate) fn yield_now() {
    let g = current_g();
    if g.is_null() {
        std::thread::yield_now();
    } else {
        // SAFETY: `g` is the G running on this thread.
        unsafe { suspend(g, Suspend::Yield) }
    }
}
