//! loom models of the runtime's lock-free protocols, run on the runtime's own code: the
//! state-word functions of `gort::protocol` are generic over small atomic traits, which the
//! runtime instantiates with std's atomics and these models with loom's (through the local
//! wrappers below). loom explores the interleavings (and the outcomes the memory orderings
//! allow) of the few threads in each model, up to a bound of preemptions per execution
//! (`PREEMPTIONS`), which keeps the whole file within a few seconds for CI.
//!
//! How each model was checked to fail when its protocol is weakened (by editing
//! `runtime/src/protocol.rs`, running `cargo test --release --test loom`, then reverting):
//! - park word: the consuming CAS NOTIFIED -> ACTIVE in `take_token` made Relaxed: loom finds a G
//!   that consumes the token without seeing the waker's condition, parks again and is never
//!   queued ("lost wake-up" assertion). `unpark` queueing a G it finds ACTIVE (possibly
//!   on its way off its stack) instead of leaving a token: "a parked G must be queued
//!   exactly once". `commit` without its Release half: the claim model reports a
//!   causality violation on the G's saved state. `unpark` returning
//!   on a plain load when it finds NOTIFIED (the code before a real hang was fixed):
//!   the stale-token model finds the G parked with its condition set and nobody to queue it.
//! - join word: `finish` made Release only (no Acquire): loom reports "Causality violation:
//!   Concurrent read and write accesses" (the G reads the joiner's handle cell unordered
//!   with the joiner's write).
//! - token: `cancel` made to succeed even when a completer claimed first: "cancelled, yet a
//!   completer won".
//! - idle M's and `wakep`: either fence removed (`should_wake` or `going_idle`): loom finds
//!   the submitter reading no idle P while the idler's last look misses the G ("stranded").
//! - waiter mark: `mark` made Relaxed: loom reports a causality violation on the record (the
//!   G reuses its stack memory unordered with the poller's last read of it).
//! - the poller's claim: `claim` made Relaxed: a causality violation on the G's saved state
//!   (read by whoever queues it, unordered with the switch that wrote it). `claim`
//!   succeeding on a G it finds ACTIVE (running, or on its way off its stack): a causality
//!   violation (the poller reads the record and saved state while the G writes them). And
//!   marking after the fallback `unpark` instead of before it leaves the G parked for good
//!   (its wait to be queued never ends: "Model exceeded maximum number of branches").
//! - P hand-off: `enter` made Relaxed (no Release): loom reports a causality violation on
//!   the P's local data (sysmon's new owner reads it unordered with the M's last write);
//!   `retake` succeeding from any status: both take the P, and loom reports the concurrent
//!   accesses to its data.

use gort::protocol::{
    idle, join_word, p_status, park_word, token, waiter_mark, AtomicBoolOps, AtomicU8Ops,
    AtomicUsizeOps,
};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering;

/// The preemption bound of every model (loom's recommended 2 - 3: most concurrency bugs
/// need few preemptions to show).
const PREEMPTIONS: usize = 3;

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTIONS);
    b.check(f);
}

/// Reads a cell shared between a model's threads. The access is what the model checks:
/// loom reports it if it is not ordered with the other side's accesses by the protocol.
fn get<T: Copy>(c: &UnsafeCell<T>) -> T {
    // SAFETY: loom's cell tracks this access and fails the model on a racing one; the
    // models only read cells the protocol under test hands to the reader.
    c.with(|p| unsafe { *p })
}

/// Writes a cell shared between a model's threads (checked as in `get`).
fn put<T>(c: &UnsafeCell<T>, v: T) {
    // SAFETY: as in `get`: loom checks that no other access races with this write.
    c.with_mut(|p| unsafe { *p = v })
}

struct L8(AtomicU8);
impl AtomicU8Ops for L8 {
    fn load(&self, o: Ordering) -> u8 {
        self.0.load(o)
    }
    fn store(&self, v: u8, o: Ordering) {
        self.0.store(v, o)
    }
    fn swap(&self, v: u8, o: Ordering) -> u8 {
        self.0.swap(v, o)
    }
    fn compare_exchange(&self, c: u8, n: u8, s: Ordering, f: Ordering) -> Result<u8, u8> {
        self.0.compare_exchange(c, n, s, f)
    }
}

struct LUsize(AtomicUsize);
impl AtomicUsizeOps for LUsize {
    fn load(&self, o: Ordering) -> usize {
        self.0.load(o)
    }
    fn store(&self, v: usize, o: Ordering) {
        self.0.store(v, o)
    }
    fn compare_exchange(
        &self,
        c: usize,
        n: usize,
        s: Ordering,
        f: Ordering,
    ) -> Result<usize, usize> {
        self.0.compare_exchange(c, n, s, f)
    }
    fn fetch_add(&self, v: usize, o: Ordering) -> usize {
        self.0.fetch_add(v, o)
    }
    fn fetch_sub(&self, v: usize, o: Ordering) -> usize {
        self.0.fetch_sub(v, o)
    }
    fn fence(o: Ordering) {
        loom::sync::atomic::fence(o)
    }
}

struct LBool(AtomicBool);
impl AtomicBoolOps for LBool {
    fn load(&self, o: Ordering) -> bool {
        self.0.load(o)
    }
    fn store(&self, v: bool, o: Ordering) {
        self.0.store(v, o)
    }
}

/// The G's side of the park word: `while !ready { park() }`, with the M's half of the switch
/// inline, `ready` loaded with `order`. True if the G ended parked (off its stack until
/// someone queues it); false if it saw the condition.
fn g_parks_until(state: &L8, ready: &AtomicBool, order: Ordering) -> bool {
    loop {
        if ready.load(order) {
            return false;
        }
        if park_word::take_token(state) {
            continue;
        }
        // The switch off the stack; then the M decides.
        if park_word::commit(state) {
            return true;
        }
    }
}

/// A G parks until a condition holds while two wakers set it and unpark the G: the G never
/// sleeps with the condition set and nobody to queue it, and at most one waker queues it.
#[test]
fn park_word_no_lost_wake_up_with_two_unparkers() {
    model(|| {
        let state = Arc::new(L8(AtomicU8::new(park_word::ACTIVE)));
        // The condition the G waits for (a plain flag: the state word must order it).
        let ready = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (state, ready, queued) = (state.clone(), ready.clone(), queued.clone());
                thread::spawn(move || {
                    ready.store(true, Ordering::Relaxed);
                    if park_word::unpark(&*state) {
                        // We queue the parked G; when it runs it sees the condition.
                        queued.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let parked = g_parks_until(&state, &ready, Ordering::Relaxed);
        for w in wakers {
            w.join().unwrap();
        }
        let q = queued.load(Ordering::Relaxed);
        if parked {
            assert_eq!(
                q, 1,
                "a parked G must be queued exactly once (lost wake-up)"
            );
        } else {
            assert_eq!(q, 0, "a G that never parked was queued");
        }
    });
}

/// A wake-up token left by an earlier, unrelated `unpark` (a completer of the G's previous
/// wait that came late) must not hide a new one: the waker sets the G's condition and
/// finds the word NOTIFIED, while the G consumes that old token, looks at its condition and
/// parks. Either the G sees the condition or the waker's `unpark` queues it.
#[test]
fn park_word_stale_token_does_not_hide_a_wake_up() {
    model(|| {
        let state = Arc::new(L8(AtomicU8::new(park_word::NOTIFIED)));
        let ready = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let waker = {
            let (state, ready, queued) = (state.clone(), ready.clone(), queued.clone());
            thread::spawn(move || {
                // As a channel completer: the outcome published with Release, then unpark.
                ready.store(true, Ordering::Release);
                if park_word::unpark(&*state) {
                    queued.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // (An Acquire load of the condition, as `Token::wait`'s of `done`.)
        let parked = g_parks_until(&state, &ready, Ordering::Acquire);
        waker.join().unwrap();
        if parked {
            assert_eq!(
                queued.load(Ordering::Relaxed),
                1,
                "the G parked with its condition set and nobody to queue it (lost wake-up)"
            );
        }
    });
}

/// The join word: the G finishes while the handle joins (registering its handle), or
/// detaches, or registers and then withdraws (a timed-out join): the result and the
/// joiner's handle are each touched by one side at a time, and a registered joiner is woken.
#[test]
fn join_word_join_detach_withdraw() {
    for mode in 0..3 {
        model(move || {
            let word = Arc::new(L8(AtomicU8::new(join_word::J_RUNNING)));
            let result = Arc::new(UnsafeCell::new(0u32));
            let joiner = Arc::new(UnsafeCell::new(0u32));
            let woken = Arc::new(AtomicBool::new(false));
            let g = {
                let (word, result, joiner, woken) =
                    (word.clone(), result.clone(), joiner.clone(), woken.clone());
                thread::spawn(move || {
                    put(&result, 42);
                    match join_word::finish(&*word) {
                        join_word::J_WAITING => {
                            // Take the joiner's handle and wake it.
                            let h = get(&joiner);
                            assert_eq!(h, 7);
                            woken.store(true, Ordering::Release);
                        }
                        join_word::J_DETACHED => {
                            // Nobody will take the result: drop it here.
                            put(&result, 0);
                        }
                        _ => {}
                    }
                })
            };
            match mode {
                // Join: register, then wait for the result.
                0 => {
                    if !join_word::is_done(&*word) {
                        put(&joiner, 7);
                        if join_word::register(&*word) {
                            while !join_word::is_done(&*word) {
                                thread::yield_now();
                            }
                        } else {
                            // Finished meanwhile: our handle was never published.
                            put(&joiner, 0);
                        }
                    }
                    assert_eq!(get(&result), 42);
                }
                // Detach: the G or we drop the result, never both.
                1 => {
                    if !join_word::detach(&*word) {
                        put(&result, 0);
                    }
                }
                // Register, then withdraw (a join that timed out), then join for good.
                _ => {
                    put(&joiner, 7);
                    if join_word::register(&*word) {
                        if join_word::withdraw(&*word) {
                            // Ours again: the G never read it.
                            put(&joiner, 0);
                        } else {
                            while !join_word::is_done(&*word) {
                                thread::yield_now();
                            }
                        }
                    } else {
                        put(&joiner, 0);
                    }
                    while !join_word::is_done(&*word) {
                        thread::yield_now();
                    }
                    assert_eq!(get(&result), 42);
                }
            }
            g.join().unwrap();
            if mode == 0 && woken.load(Ordering::Acquire) {
                // Woken only after registering: the handle it read was ours.
                assert_eq!(get(&joiner), 7);
            }
        });
    }
}

/// A channel token: two completers (say, a receive arm and a send arm of one select, on
/// two channels) race to claim it while its owner times out and cancels. Exactly one wins;
/// the value moves through the slot only from the winning completer to the owner, and only
/// after `done`.
#[test]
fn token_claimed_by_one_completer_or_cancelled() {
    model(|| {
        let selected = Arc::new(LUsize(AtomicUsize::new(token::NONE)));
        let done = Arc::new(LBool(AtomicBool::new(false)));
        let slot = Arc::new(UnsafeCell::new(0usize));
        let wins = Arc::new(AtomicUsize::new(0));
        let completers: Vec<_> = (0..2)
            .map(|case| {
                let (selected, done, slot, wins) =
                    (selected.clone(), done.clone(), slot.clone(), wins.clone());
                thread::spawn(move || {
                    if token::claim(&*selected, case, false) {
                        wins.fetch_add(1, Ordering::Relaxed);
                        put(&slot, 100 + case);
                        token::publish_done(&*done);
                    }
                })
            })
            .collect();
        // The owner times out.
        let got = if token::cancel(&*selected) {
            None
        } else {
            // Claimed first: wait for the completer to finish, then take the value.
            while !token::is_done(&*done) {
                thread::yield_now();
            }
            let case = token::selected(&*selected);
            let v = get(&slot);
            assert_eq!(v, 100 + case);
            Some(case)
        };
        for c in completers {
            c.join().unwrap();
        }
        let w = wins.load(Ordering::Relaxed);
        match got {
            None => assert_eq!(w, 0, "cancelled, yet a completer won"),
            Some(_) => assert_eq!(w, 1, "exactly one completer wins"),
        }
    });
}

/// A netpoller waiter's record, on the waiting G's stack: the poller reads it (the next
/// record, the G's handle) and marks it taken; the G, back from its park, reads the mark and
/// leaves at once, its stack frame (the record) reused. The reuse must come after the
/// poller's reads, whatever the interleaving; and a G that sees the mark sees how it was
/// taken.
#[test]
fn waiter_mark_hands_the_record_back_to_its_owner() {
    model(|| {
        let mark = Arc::new(L8(AtomicU8::new(waiter_mark::QUEUED)));
        let record = Arc::new(UnsafeCell::new(7usize));
        let poller = {
            let (mark, record) = (mark.clone(), record.clone());
            thread::spawn(move || {
                // Under the descriptor's lock in the runtime: read the record, then mark it.
                assert_eq!(get(&record), 7);
                waiter_mark::mark(&*mark, waiter_mark::WOKEN_CLOSED);
            })
        };
        // The owner: spurious returns from its park see the record still queued.
        let how = loop {
            match waiter_mark::read(&*mark) {
                waiter_mark::QUEUED => thread::yield_now(),
                how => break how,
            }
        };
        assert_eq!(how, waiter_mark::WOKEN_CLOSED);
        // Leaving: the frame is reused.
        put(&record, 0);
        poller.join().unwrap();
    });
}

/// The netpoller's wake-up of one waiter, both ways: it claims a parked G (PARKED ->
/// ACTIVE, `park_word::claim`), still reads the record, marks it and queues the G; or, when
/// the G is not parked yet (on its way to park, or back early from a spurious return), it
/// marks the record and then `unpark`s. The G loops on the mark around its parks. Whatever
/// the interleaving: the G ends with the mark, is queued at most once per park and never
/// while it is running, and reuses its record only after the poller's last read of it.
#[test]
fn netpoller_claim_or_unpark_wakes_the_waiter() {
    model(|| {
        let state = Arc::new(L8(AtomicU8::new(park_word::ACTIVE)));
        let mark = Arc::new(L8(AtomicU8::new(waiter_mark::QUEUED)));
        let record = Arc::new(UnsafeCell::new(7usize));
        // What the switch saved when the G left its stack (its registers), which the M that
        // resumes it reads: through the claim, then the run queue.
        let saved = Arc::new(UnsafeCell::new(0usize));
        // The run queue, reduced to "queued" (a Release push, an Acquire pop).
        let queued = Arc::new(AtomicBool::new(false));
        let poller = {
            let (state, mark, record, saved, queued) = (
                state.clone(),
                mark.clone(),
                record.clone(),
                saved.clone(),
                queued.clone(),
            );
            thread::spawn(move || {
                // Under the descriptor's lock in the runtime.
                assert_eq!(get(&record), 7);
                if park_word::claim(&*state) {
                    // The G is off its stack until queued: its record may still be read,
                    // and its saved state is complete (read here in the resuming M's stead).
                    assert_eq!(get(&record), 7);
                    assert_eq!(get(&saved), 1);
                    waiter_mark::mark(&*mark, waiter_mark::WOKEN);
                    queued.store(true, Ordering::Release);
                } else {
                    // (A counted handle keeps the G alive from here on.)
                    waiter_mark::mark(&*mark, waiter_mark::WOKEN);
                    if park_word::unpark(&*state) {
                        queued.store(true, Ordering::Release);
                    }
                }
            })
        };
        // The G: park until the mark says it was taken.
        loop {
            if waiter_mark::read(&*mark) != waiter_mark::QUEUED {
                break;
            }
            if park_word::take_token(&*state) {
                continue;
            }
            // The switch off its stack; then the M decides.
            put(&saved, 1);
            if park_word::commit(&*state) {
                // Parked: off its stack until somebody queues it; then an M runs it.
                while !queued.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                queued.store(false, Ordering::Relaxed);
            }
        }
        // Leaving: the frame is reused.
        put(&record, 0);
        poller.join().unwrap();
        assert!(!queued.load(Ordering::Relaxed), "queued while it ran");
    });
}

/// The P hand-off around `blocking`: the M marks its P P_SYSCALL and makes a blocking call;
/// sysmon may take the P meanwhile (to hand it to another M) or the M may take it back when
/// the call returns. Exactly one of them owns the P afterwards, and the P's local data
/// (its queues and caches, a plain cell here) passes from the M to the winner in order.
#[test]
fn p_status_hand_off_between_a_returning_m_and_sysmon() {
    model(|| {
        let status = Arc::new(L8(AtomicU8::new(p_status::P_RUNNING)));
        let local = Arc::new(UnsafeCell::new(0u32));
        let owners = Arc::new(AtomicUsize::new(0));
        // The M: uses its P, enters the call, comes back.
        let m = {
            let (status, local, owners) = (status.clone(), local.clone(), owners.clone());
            thread::spawn(move || {
                put(&local, 1);
                p_status::enter(&*status);
                // ... the blocking call ...
                if p_status::reclaim(&*status) {
                    owners.fetch_add(1, Ordering::Relaxed);
                    put(&local, get(&local) + 1);
                }
            })
        };
        // Sysmon: if it sees the call, takes the P for another M, which uses it.
        if status.load(Ordering::Relaxed) == p_status::P_SYSCALL && p_status::retake(&*status) {
            owners.fetch_add(1, Ordering::Relaxed);
            let seen = get(&local);
            assert_eq!(seen, 1, "the new owner sees the M's last use of the P");
            put(&local, 10);
        }
        m.join().unwrap();
        assert!(owners.load(Ordering::Relaxed) <= 1, "both took the P");
    });
}

/// Idle M's and `wakep`: a thread without a P submits a G (to the global queue) while the
/// last spinning M finds nothing and goes idle. Either the idler's last look finds the G or
/// the submitter wakes an M for it: the G is never stranded.
#[test]
fn idle_m_and_wakep_strand_no_g() {
    model(|| {
        // One P, held by the spinning M that is about to go idle.
        let npidle = Arc::new(LUsize(AtomicUsize::new(0)));
        let nmspinning = Arc::new(LUsize(AtomicUsize::new(1)));
        // The global queue (its push and pop are Relaxed here: the fences must do the work).
        let queue = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (npidle, nmspinning, queue) = (npidle.clone(), nmspinning.clone(), queue.clone());
            thread::spawn(move || {
                queue.store(1, Ordering::Relaxed);
                idle::should_wake(&*npidle, &*nmspinning, true)
            })
        };
        // The idler: its P goes on the idle list, it stops spinning, and looks once more.
        idle::p_idled(&*npidle);
        idle::going_idle(&*nmspinning, true);
        let found = queue.load(Ordering::Relaxed) != 0;
        let woke = submitter.join().unwrap();
        assert!(found || woke, "the G is stranded: nobody runs it");
    });
}
