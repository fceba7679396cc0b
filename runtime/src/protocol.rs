//! The state words of the runtime's lock-free protocols, as small functions over an atomic
//! trait, so that the loom models (`tests/loom.rs`) run this very code with loom's atomics
//! while the runtime runs it with std's (the generic functions compile to the same code).
//!
//! - [`park_word`]: a G's park state word (ACTIVE / NOTIFIED / PARKED ...), between
//!   the G going to sleep, the M finishing the switch, and any number of unparkers.
//! - [`join_word`]: a G's join word, between the finishing G, the joiner and a detach.
//! - [`token`]: a channel operation's token, between completers and an owner that times out
//!   or a select that withdraws.
//! - [`waiter_mark`]: the mark on a netpoller waiter's record, between the poller taking it
//!   off its queue and the G that owns it (on its stack) leaving.
//!
//! Not a public API: `#[doc(hidden)]`, exported only for the models.

use std::sync::atomic::Ordering;

/// The operations the protocols use on a one-byte atomic.
pub trait AtomicU8Ops {
    fn load(&self, order: Ordering) -> u8;
    fn store(&self, v: u8, order: Ordering);
    fn swap(&self, v: u8, order: Ordering) -> u8;
    fn compare_exchange(&self, cur: u8, new: u8, ok: Ordering, err: Ordering) -> Result<u8, u8>;
}

/// The operations the protocols use on a word-sized atomic (and the fence they pair with).
pub trait AtomicUsizeOps {
    fn load(&self, order: Ordering) -> usize;
    fn store(&self, v: usize, order: Ordering);
    fn fetch_add(&self, v: usize, order: Ordering) -> usize;
    fn fetch_sub(&self, v: usize, order: Ordering) -> usize;
    /// A memory fence of the same world as the atomic (std's, or the model checker's).
    fn fence(order: Ordering);
    fn compare_exchange(
        &self,
        cur: usize,
        new: usize,
        ok: Ordering,
        err: Ordering,
    ) -> Result<usize, usize>;
}

/// The operations the protocols use on a boolean atomic.
pub trait AtomicBoolOps {
    fn load(&self, order: Ordering) -> bool;
    fn store(&self, v: bool, order: Ordering);
}

macro_rules! std_ops {
    ($tr:ident, $ty:ty, $v:ty) => {
        impl $tr for $ty {
            #[inline(always)]
            fn load(&self, order: Ordering) -> $v {
                <$ty>::load(self, order)
            }
            #[inline(always)]
            fn store(&self, v: $v, order: Ordering) {
                <$ty>::store(self, v, order)
            }
            std_ops!(@extra $tr, $ty, $v);
        }
    };
    (@extra AtomicBoolOps, $ty:ty, $v:ty) => {};
    (@extra AtomicUsizeOps, $ty:ty, $v:ty) => {
        #[inline(always)]
        fn fetch_add(&self, v: $v, order: Ordering) -> $v {
            <$ty>::fetch_add(self, v, order)
        }
        #[inline(always)]
        fn fetch_sub(&self, v: $v, order: Ordering) -> $v {
            <$ty>::fetch_sub(self, v, order)
        }
        #[inline(always)]
        fn fence(order: Ordering) {
            std::sync::atomic::fence(order)
        }
        #[inline(always)]
        fn compare_exchange(&self, c: $v, n: $v, s: Ordering, f: Ordering) -> Result<$v, $v> {
            <$ty>::compare_exchange(self, c, n, s, f)
        }
    };
    (@extra AtomicU8Ops, $ty:ty, $v:ty) => {
        #[inline(always)]
        fn swap(&self, v: $v, order: Ordering) -> $v {
            <$ty>::swap(self, v, order)
        }
        #[inline(always)]
        fn compare_exchange(&self, c: $v, n: $v, s: Ordering, f: Ordering) -> Result<$v, $v> {
            <$ty>::compare_exchange(self, c, n, s, f)
        }
    };
}

std_ops!(AtomicU8Ops, std::sync::atomic::AtomicU8, u8);
std_ops!(AtomicUsizeOps, std::sync::atomic::AtomicUsize, usize);
std_ops!(AtomicBoolOps, std::sync::atomic::AtomicBool, bool);

/// A G's park state word (see ARCHITECTURE, "Parking").
pub mod park_word {
    use super::*;
    /// Runnable, running, queued, or switching off its stack to park; no wake-up token.
    pub const ACTIVE: u8 = 0;
    /// As ACTIVE, with a wake-up token: the next `park` returns at once (or, if the G is
    /// already switching off its stack, its M resumes it at once: see [`commit`]).
    pub const NOTIFIED: u8 = 1;
    /// Off its stack, in nobody's queue; the next `unpark` makes it runnable.
    pub const PARKED: u8 = 2;
    /// Finished; unparks are ignored.
    pub const DEAD: u8 = 3;
    /// PARKED, and sysmon is giving back part of its stack (`shrink.rs`): not runnable yet.
    pub const SHRINKING: u8 = 4;
    /// SHRINKING, and an `unpark` came: the shrinker queues the G when it is done.
    pub const SHRINK_WOKEN: u8 = 5;

    /// The G's only step in `park_g`: consumes a waiting wake-up token. True: the G goes
    /// on without suspending; false: it switches off its stack and its M decides
    /// ([`commit`]). The G writes nothing to the word on the way out: a token that arrives
    /// after this look, during the switch, is found by the M's compare-exchange.
    #[inline(always)]
    pub fn take_token<A: AtomicU8Ops>(state: &A) -> bool {
        // Acquire pairs with the waker's Release. (A plain load first: a failing
        // compare-exchange costs as much as a succeeding one.)
        state.load(Ordering::Relaxed) == NOTIFIED
            && state
                .compare_exchange(NOTIFIED, ACTIVE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// The M's side, once the G is off its stack: ACTIVE -> PARKED. True if the G is now
    /// parked (an unparker will queue it); false if a wake-up came since the G's look
    /// (the token is consumed, the word is back to ACTIVE, and the M runs the G again at
    /// once). Every decision on the word is a read-modify-write, so the M's and the
    /// unparker's are ordered: either the unparker finds PARKED (and queues the G) or the
    /// M finds NOTIFIED.
    #[inline(always)]
    pub fn commit<A: AtomicU8Ops>(state: &A) -> bool {
        // AcqRel: Release publishes the suspended coroutine to the M that will resume it
        // (pairs with the waker's Acquire CAS PARKED -> ACTIVE); Acquire takes the waker's
        // writes if the token won.
        match state.compare_exchange(ACTIVE, PARKED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(NOTIFIED) => {
                state.store(ACTIVE, Ordering::Relaxed);
                false
            }
            Err(other) => unreachable!("G parked in state {other}"),
        }
    }

    /// An unparker's shortcut for a G it expects parked (the netpoller's waiters): PARKED
    /// -> ACTIVE and nothing else. True: as [`unpark`]'s true (the caller now queues the G,
    /// with the reference it kept when it parked); until then the G stays off its stack, so
    /// the caller may still touch what the G is waiting on. False: the word is unchanged,
    /// and the caller falls back to [`unpark`] (which also handles a G not parked yet).
    #[inline(always)]
    pub fn claim<A: AtomicU8Ops>(state: &A) -> bool {
        // Acquire: pairs with the M's Release CAS ACTIVE -> PARKED (`commit`), as in
        // `unpark`. No Release is needed: the claimer hands the G over through a run queue,
        // whose push publishes what the claimer wrote before it.
        state
            .compare_exchange(PARKED, ACTIVE, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// An unparker's side. True if the G was PARKED and the caller must now queue it (it
    /// is the only one to get true for that park).
    #[inline(always)]
    pub fn unpark<A: AtomicU8Ops>(state: &A) -> bool {
        let mut cur = state.load(Ordering::Relaxed);
        loop {
            let new = match cur {
                DEAD => return false,
                // Already woken: nothing to change, but still an RMW (the same value back),
                // never a bare load. The token may be an old one that the G is consuming
                // right now; a load could read it from before that consuming CAS while our
                // caller's condition store still sits in this core's store buffer (the
                // store-buffer pattern), and the G, its token taken, would miss the
                // condition and park with nobody left to queue it. An RMW is ordered with
                // the G's CAS on the word: if ours comes first, the G's Acquire reads our
                // Release and sees the condition; if the G's comes first, ours fails and
                // we go round again and find ACTIVE.
                NOTIFIED | SHRINK_WOKEN => cur,
                ACTIVE => NOTIFIED,
                PARKED => ACTIVE,
                // Sysmon is shrinking its stack: it queues the G when done (`shrink.rs`).
                SHRINKING => SHRINK_WOKEN,
                other => unreachable!("bad G state {other}"),
            };
            // AcqRel: Release makes the waker's writes (the condition it changed) visible
            // to the G, which reads the token with Acquire (or, for SHRINK_WOKEN, to the
            // shrinker's Acquire, which then queues it); Acquire on PARKED -> ACTIVE
            // pairs with the M's Release CAS ACTIVE -> PARKED, so the suspended coroutine
            // is complete before we queue it.
            match state.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return cur == PARKED,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A G's join word (see ARCHITECTURE, "Join"): the finishing G, one joiner (which may
/// register, wait and withdraw) and a detach race on it; the joiner's handle and the result
/// slot are handed over by its transitions.
pub mod join_word {
    use super::*;

    /// Running; no joiner registered.
    pub const J_RUNNING: u8 = 0;
    /// A joiner registered its handle and waits.
    pub const J_WAITING: u8 = 1;
    /// Finished: the result is in the slot.
    pub const J_DONE: u8 = 2;
    /// The handle was dropped: the G drops its own result.
    pub const J_DETACHED: u8 = 3;

    /// The G, its result in the slot: returns the word it replaced (J_WAITING: wake the
    /// registered joiner; J_DETACHED: drop the result).
    #[inline(always)]
    pub fn finish<A: AtomicU8Ops>(word: &A) -> u8 {
        // AcqRel: Release publishes the result to the joiner's Acquire; Acquire takes the
        // joiner's handle (J_WAITING) or the handle's departure (J_DETACHED).
        word.swap(J_DONE, Ordering::AcqRel)
    }

    /// Whether the result is ready (Acquire: pairs with `finish`).
    #[inline(always)]
    pub fn is_done<A: AtomicU8Ops>(word: &A) -> bool {
        word.load(Ordering::Acquire) == J_DONE
    }

    /// The joiner, its handle written: publishes it. False if the G finished first (the
    /// result is ready, and the handle was never read).
    #[inline(always)]
    pub fn register<A: AtomicU8Ops>(word: &A) -> bool {
        // Release publishes the handle; Acquire (on failure: J_DONE) takes the result.
        word.compare_exchange(J_RUNNING, J_WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The joiner takes its registration back. False if the G finished first (it has taken
    /// the handle to wake it, and the result is ready).
    #[inline(always)]
    pub fn withdraw<A: AtomicU8Ops>(word: &A) -> bool {
        // Acquire on failure: J_DONE, the result may be taken next.
        word.compare_exchange(J_WAITING, J_RUNNING, Ordering::Relaxed, Ordering::Acquire)
            .is_ok()
    }

    /// The handle goes without joining. False if the G finished first: the caller drops
    /// the result.
    #[inline(always)]
    pub fn detach<A: AtomicU8Ops>(word: &A) -> bool {
        // AcqRel: Release tells the G to drop its own result; Acquire (on failure: J_DONE)
        // takes the result so that we drop it.
        word.compare_exchange(J_RUNNING, J_DETACHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A blocked channel operation's token (see `chan/mod.rs`, "How blocking works"): the
/// completers that find its waiters race to claim it; its owner may cancel it on a timeout
/// or a select's withdrawal; the winning completer publishes `done` when it has moved the
/// value.
pub mod token {
    use super::*;

    /// No case chosen yet.
    pub const NONE: usize = usize::MAX;
    /// The owner gave up.
    pub const CANCELLED: usize = usize::MAX - 1;

    /// A completer claims the token for `case`. Only the winner may complete.
    /// `exclusive`: a single waiter that its owner never cancels, popped under the channel
    /// lock: no other claimant can exist.
    #[inline(always)]
    pub fn claim<A: AtomicUsizeOps>(selected: &A, case: usize, exclusive: bool) -> bool {
        if exclusive {
            selected.store(case, Ordering::Relaxed);
            return true;
        }
        // AcqRel: Acquire pairs with the owner's publication of the waiter (made under the
        // channel lock); Release orders our claim before our writes to the slot.
        selected
            .compare_exchange(NONE, case, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The owner cancels an unclaimed token. False if a completer claimed it first (the
    /// owner must then wait for `done`).
    #[inline(always)]
    pub fn cancel<A: AtomicUsizeOps>(selected: &A) -> bool {
        selected
            .compare_exchange(NONE, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The winning completer's last touch: the value is in place.
    #[inline(always)]
    pub fn publish_done<B: AtomicBoolOps>(done: &B) {
        // Release: publishes the slot and `closed` to the owner's Acquire load.
        done.store(true, Ordering::Release);
    }

    /// Whether the completer is done (Acquire: pairs with `publish_done`).
    #[inline(always)]
    pub fn is_done<B: AtomicBoolOps>(done: &B) -> bool {
        done.load(Ordering::Acquire)
    }

    /// The case chosen (after `done`, or after a failed `cancel`).
    #[inline(always)]
    pub fn selected<A: AtomicUsizeOps>(selected: &A) -> usize {
        selected.load(Ordering::Acquire)
    }
}

/// The mark on a G's waiter record in a poll descriptor's queue (`net::poller`). The record
/// lives on the waiting G's stack; the poller, under the descriptor's lock, reads what it
/// needs of it (the next record, the G's handle) and then marks it taken, its last touch.
/// The G, back from its park, reads the mark: taken, it leaves at once, without the lock,
/// and its stack frame (the record with it) is reused.
pub mod waiter_mark {
    use super::*;

    /// Still queued.
    pub const QUEUED: u8 = 0;
    /// Taken off the queue by a readiness event.
    pub const WOKEN: u8 = 1;
    /// Taken off the queue because the descriptor was closed.
    pub const WOKEN_CLOSED: u8 = 2;

    /// The poller's last touch of a record it took off the queue.
    #[inline(always)]
    pub fn mark<A: AtomicU8Ops>(m: &A, how: u8) {
        // Release: pairs with `read`'s Acquire, so that the poller's reads of the record
        // happen before its owner reuses the memory.
        m.store(how, Ordering::Release);
    }

    /// The owner's look after its park: `QUEUED`, or how it was taken.
    #[inline(always)]
    pub fn read<A: AtomicU8Ops>(m: &A) -> u8 {
        // Acquire: pairs with `mark`.
        m.load(Ordering::Acquire)
    }
}

/// A P's status word around `gort::blocking` (see ARCHITECTURE, "Blocking calls"): the M
/// that enters a blocking call leaves its P marked P_SYSCALL; when the call returns the M
/// takes it back, unless sysmon took it first to hand it to another M. Whoever wins owns the
/// P (its queues and caches) from then on.
pub mod p_status {
    use super::*;

    /// In the idle list (or being handed from sysmon to an M).
    pub const P_IDLE: u8 = 0;
    /// Held by an M running G's.
    pub const P_RUNNING: u8 = 1;
    /// Its M is inside `blocking`: sysmon may take it.
    pub const P_SYSCALL: u8 = 2;

    /// The M enters a blocking call. SeqCst: its Release half publishes the M's use of the
    /// P to whoever takes it next (pairs with the Acquire CASes below); with the caller's
    /// SeqCst load of `sysmon_sleeping` it is one side of a store-buffer pair with sysmon.
    #[inline(always)]
    pub fn enter<A: AtomicU8Ops>(status: &A) {
        status.store(P_SYSCALL, Ordering::SeqCst);
    }

    /// The M, back from the call: takes its P back. False if sysmon handed it off.
    #[inline(always)]
    pub fn reclaim<A: AtomicU8Ops>(status: &A) -> bool {
        // Acquire: if the P went through other hands meanwhile (another M took it and
        // entered `blocking` itself), their writes to it come with it.
        status
            .compare_exchange(P_SYSCALL, P_RUNNING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Sysmon takes a P whose M is still in its call (to hand it off). False if the M came
    /// back first.
    #[inline(always)]
    pub fn retake<A: AtomicU8Ops>(status: &A) -> bool {
        // Acquire: pairs with `enter` (the M's use of the P before the call comes with it).
        status
            .compare_exchange(P_SYSCALL, P_IDLE, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

/// Idle M's and `wakep` (see the module docs of `sched.rs`): a submitter that has published
/// a G wakes an idle M only if there is an idle P and no M spinning; an M that runs out of
/// work gives its P back, stops spinning, and looks at every queue once more. The two SeqCst
/// fences make it a store-buffer (Dekker) pair: either the idler's last look sees the G, or
/// the submitter sees the idle P and wakes someone. No G is stranded.
pub mod idle {
    use super::*;

    /// The submitter's side, after it published work (with `external`, from a thread
    /// without a P: the fence is then needed; on a P the caller's own P will come back to its
    /// queues anyway). True: the caller must start a spinning M (counted in `nmspinning`).
    #[inline(always)]
    pub fn should_wake<A: AtomicUsizeOps>(npidle: &A, nmspinning: &A, external: bool) -> bool {
        if external {
            // SeqCst fence: orders our queue push before the loads below, pairing with the
            // fence an idling M issues between its counter updates and its last look.
            A::fence(Ordering::SeqCst);
        }
        if npidle.load(Ordering::Relaxed) == 0 {
            return false;
        }
        // One spinning M is enough; the CAS elects it.
        nmspinning.load(Ordering::Relaxed) == 0
            && nmspinning
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    /// A P goes on the idle list (under the idle lock). SeqCst: read by `should_wake`.
    #[inline(always)]
    pub fn p_idled<A: AtomicUsizeOps>(npidle: &A) {
        npidle.fetch_add(1, Ordering::SeqCst);
    }

    /// The idler's side, after its P is on the idle list: stops spinning (if it was) and
    /// issues the fence; the caller then looks at every queue once more.
    #[inline(always)]
    pub fn going_idle<A: AtomicUsizeOps>(nmspinning: &A, was_spinning: bool) {
        if was_spinning {
            nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
        // SeqCst fence: the idler's half of the pair (see `should_wake`).
        A::fence(Ordering::SeqCst);
    }
}
