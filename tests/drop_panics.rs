//! User code that the runtime runs on an M — dropping a detached G's result or panic payload,
//! dropping the closure of a G that could not get a stack, the pool's panic handler — may
//! panic. None of it may cost an M, a P or a pool worker: each case runs in a child process
//! (where a lost P would hang, not fail) under `GORT_MAXPROCS=1` and `2`, and afterwards
//! every P must still run work and be idle again.
mod common;
use common::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Panics when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("Bomb dropped");
    }
}

/// Panics when dropped, with a payload that itself panics when dropped.
struct NestedBomb;

impl Drop for NestedBomb {
    fn drop(&mut self) {
        std::panic::panic_any(Bomb);
    }
}

/// Afterwards, the runtime still has all its P's: CPU-bound G's that each wait until every P
/// runs one of them (forced with a counter, not timing) all finish, and every P goes idle.
fn all_ps_still_work() {
    let procs = gort::max_procs();
    let arrived = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..procs)
        .map(|_| {
            let arrived = arrived.clone();
            gort::go!(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                // Spin (not yield) until every P runs one of us: with a P lost, this never
                // ends, and the parent's timeout reports the hang.
                while arrived.load(Ordering::SeqCst) < procs {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let sum: u64 = (0..1000u64)
        .map(|i| gort::go!(move || i))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(sum, 999 * 1000 / 2);
    // Every P comes back to the idle list (none is held by a dead M).
    let mut idle = 0;
    for _ in 0..2000 {
        idle = gort::stats().idle_procs;
        if idle == procs {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(idle, procs, "P's lost: {:?}", gort::stats());
}

/// Runs `test`'s child body under 1 and 2 P's, with a deadline; checks the child succeeded
/// and printed `what` (the containment message).
fn run_both(test: &str, extra: &[(&str, &str)], what: &str) {
    for procs in ["1", "2"] {
        let mut env = vec![("GORT_MAXPROCS", procs)];
        env.extend_from_slice(extra);
        let o = run_child_with_deadline(test, &env, Duration::from_secs(60));
        assert_success(&o);
        let err = stderr(&o);
        assert!(err.contains(what), "GORT_MAXPROCS={procs}: {err}");
        assert!(stdout(&o).contains("child done"), "{}", stdout(&o));
    }
}

/// Waits until every spawned G has finished.
fn wait_all_finished() {
    while gort::num_green_threads() > 0 {
        std::thread::yield_now();
    }
}

#[test]
fn detached_result_panics_on_drop() {
    if is_child("detached_result_panics_on_drop") {
        for _ in 0..50 {
            drop(gort::go!(|| Bomb));
        }
        // And from inside G's, on whichever M.
        let hs: Vec<_> = (0..20)
            .map(|_| gort::go!(|| drop(gort::go!(|| Bomb))))
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        wait_all_finished();
        all_ps_still_work();
        println!("child done");
        return;
    }
    run_both(
        "detached_result_panics_on_drop",
        &[],
        "result panicked on drop",
    );
}

#[test]
fn detached_payload_panics_on_drop() {
    if is_child("detached_payload_panics_on_drop") {
        for _ in 0..50 {
            drop(gort::go!(|| std::panic::panic_any(Bomb)));
            // A payload whose drop panics with a payload that panics on drop.
            drop(gort::go!(|| std::panic::panic_any(NestedBomb)));
        }
        wait_all_finished();
        all_ps_still_work();
        println!("child done");
        return;
    }
    run_both(
        "detached_payload_panics_on_drop",
        &[],
        "result panicked on drop",
    );
}

/// The handle is dropped after the G finished: the dropper drops the result, and the
/// panic of that drop does not reach the dropper (a G here, and the main thread).
#[test]
fn finished_result_dropped_by_handle_owner() {
    if is_child("finished_result_dropped_by_handle_owner") {
        let h = gort::go!(|| Bomb);
        while !h.is_finished() {
            std::thread::yield_now();
        }
        drop(h);
        let inner = gort::go!(|| {
            let h = gort::go!(|| std::panic::panic_any(Bomb));
            while !h.is_finished() {
                gort::yield_now();
            }
            drop(h);
            "the dropper goes on"
        });
        assert_eq!(inner.join().unwrap(), "the dropper goes on");
        all_ps_still_work();
        println!("child done");
        return;
    }
    run_both(
        "finished_result_dropped_by_handle_owner",
        &[],
        "result panicked on drop",
    );
}

/// A lazily bound G that cannot get a stack drops its closure on the M: captures whose
/// drop panics must not kill the M. (mprotect guards, driven to `vm.max_map_count`.)
#[test]
fn closure_of_unstartable_g_panics_on_drop() {
    if is_child("closure_of_unstartable_g_panics_on_drop") {
        let open = Arc::new(AtomicBool::new(false));
        // Hold stacks until no more can be mapped.
        let mut held = Vec::new();
        loop {
            let o = open.clone();
            match gort::Builder::new().spawn(move || {
                while !o.load(Ordering::SeqCst) {
                    gort::yield_now();
                }
            }) {
                Ok(h) => held.push(h),
                Err(_) => break,
            }
            assert!(held.len() < 1_000_000, "never hit the mapping limit");
        }
        // These cannot start; their closures own a Bomb each.
        let failed: Vec<_> = (0..10)
            .map(|_| {
                let b = Bomb;
                gort::go!(move || {
                    let _b = &b;
                })
            })
            .collect();
        for h in failed {
            let e = h.join().unwrap_err();
            let m = e.downcast_ref::<String>().expect("a message");
            assert!(m.contains("could not start"), "{m}");
        }
        // Detached ones too.
        for _ in 0..10 {
            let b = Bomb;
            drop(gort::go!(move || {
                let _b = &b;
            }));
        }
        open.store(true, Ordering::SeqCst);
        for h in held {
            h.join().unwrap();
        }
        wait_all_finished();
        all_ps_still_work();
        println!("child done");
        return;
    }
    run_both(
        "closure_of_unstartable_g_panics_on_drop",
        &[("GORT_STACK_GUARD", "mprotect")],
        "closure panicked on drop",
    );
}

/// A pool of one worker whose panic handler panics, and tasks whose payloads panic on drop:
/// the worker survives every one of them, and the next submits run.
#[test]
fn pool_keeps_its_worker_through_panicking_handler_and_payloads() {
    if is_child("pool_keeps_its_worker_through_panicking_handler_and_payloads") {
        let handled = Arc::new(AtomicUsize::new(0));
        let h2 = handled.clone();
        let pool = gort::pool::Pool::builder()
            .capacity(1)
            .panic_handler(move |payload| {
                h2.fetch_add(1, Ordering::SeqCst);
                // Dropped first: a `Bomb` payload panics right here. (Held across the
                // panic below, it would panic during unwinding, which Rust itself turns
                // into an abort, runtime or not.)
                drop(payload);
                panic!("handler panics");
            })
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        for i in 0..30 {
            let ran = ran.clone();
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                match i % 3 {
                    0 => panic!("task panics"),
                    1 => std::panic::panic_any(Bomb),
                    _ => {}
                }
            })
            .unwrap();
        }
        // A pool without a handler: payloads that panic on drop.
        let plain = gort::pool::Pool::new(1).unwrap();
        for _ in 0..10 {
            let ran = ran.clone();
            plain
                .submit(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    std::panic::panic_any(NestedBomb)
                })
                .unwrap();
        }
        // Both pools still serve: a task that reports back.
        for p in [&pool, &plain] {
            let (tx, rx) = gort::chan::bounded(1);
            p.submit(move || tx.send(7).unwrap()).unwrap();
            assert_eq!(rx.recv().unwrap(), 7);
            assert_eq!(p.running(), 1, "{p:?}");
        }
        assert_eq!(ran.load(Ordering::SeqCst), 40);
        assert_eq!(handled.load(Ordering::SeqCst), 20);
        pool.release_timeout(Duration::from_secs(30)).unwrap();
        plain.release_timeout(Duration::from_secs(30)).unwrap();
        all_ps_still_work();
        println!("child done");
        return;
    }
    run_both(
        "pool_keeps_its_worker_through_panicking_handler_and_payloads",
        &[],
        "panic handler panicked",
    );
}
