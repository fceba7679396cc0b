//! Waiting with a deadline, without a helper green thread: `JoinHandle::join_timeout`,
//! `WaitGroup::wait_timeout`, `Pool::submit_timeout`. Orderings forced with channels; exact
//! counts; under 1, 2 and 4 P's.

mod common;
use common::{assert_success, is_child, run_child};

use gort::pool::{Pool, PoolError};
use gort::sync::WaitGroup;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(2);
const LONG: Duration = Duration::from_secs(60);

fn join_timeouts() {
    // A G that waits for a message: joins time out, hand the handle back, and the result
    // arrives once it is released; from the main thread and from a G.
    for from_g in [false, true] {
        let run = move || {
            let (tx, rx) = gort::chan::bounded::<u32>(0);
            let mut h = gort::go!(move || rx.recv().unwrap() * 2);
            for _ in 0..3 {
                h = h.join_timeout(SHORT).expect_err("still running");
                assert!(!h.is_finished());
            }
            tx.send(21).unwrap();
            assert_eq!(h.join_timeout(LONG).ok().unwrap().unwrap(), 42);
        };
        if from_g {
            gort::go!(run).join().unwrap();
        } else {
            run();
        }
    }
    // Races between the deadline and the end: many G's finishing as their joiners time out;
    // every result is taken exactly once (by a join_timeout or a later join) or dropped by
    // a detach, and no joiner hangs.
    let results = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..2_000u64)
        .map(|i| {
            let results = results.clone();
            gort::go!(move || {
                let h = gort::go!(move || {
                    for _ in 0..(i % 4) {
                        gort::yield_now();
                    }
                    i
                });
                match h.join_timeout(Duration::from_micros(i % 50)) {
                    Ok(r) => assert_eq!(r.unwrap(), i),
                    Err(h) if i % 3 == 0 => drop(h), // detach
                    Err(h) => assert_eq!(h.join().unwrap(), i),
                }
                results.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(results.load(Ordering::SeqCst), 2_000);
    // A panicking G's panic comes through join_timeout like join.
    let h = gort::go!(|| -> u32 { std::panic::panic_any("joined-timeout-quiet") });
    let r = h.join_timeout(LONG).ok().unwrap();
    assert!(r.is_err());
}

#[test]
fn join_timeout() {
    if is_child("join_timeout") {
        std::panic::set_hook(Box::new(|_| {}));
        join_timeouts();
        return;
    }
    for procs in ["1", "2", "4"] {
        assert_success(&run_child("join_timeout", &[("GORT_MAXPROCS", procs)]));
    }
}

fn wait_timeouts() {
    // Times out while work is outstanding, succeeds once it is done.
    let wg = WaitGroup::new();
    wg.add(2);
    let (tx, rx) = gort::chan::bounded::<()>(0);
    let (half_tx, half_rx) = gort::chan::bounded::<()>(0);
    let w = wg.clone();
    let worker = gort::go!(move || {
        w.done();
        half_tx.send(()).unwrap();
        rx.recv().unwrap();
        w.done();
    });
    half_rx.recv().unwrap(); // one done, one to go
    assert!(!wg.wait_timeout(SHORT));
    assert_eq!(wg.count(), 1);
    tx.send(()).unwrap();
    assert!(wg.wait_timeout(LONG));
    worker.join().unwrap();
    assert!(wg.wait_timeout(Duration::ZERO));

    // Rounds of one group, each with waiters that time out and waiters that wait, the next
    // round's `add` racing the previous release: a waiter that reports success saw its
    // round's workers all finished, and timed-out waiters leave nothing behind (the last
    // rounds' plain waiters are all released).
    const ROUNDS: usize = 200;
    const WORKERS: usize = 16;
    let wg = WaitGroup::new();
    let finished: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let mut waiters = Vec::new();
    for r in 0..ROUNDS {
        wg.add(WORKERS);
        for k in 0..WORKERS {
            let (wg, finished) = (wg.clone(), finished.clone());
            gort::go!(move || {
                for _ in 0..(k % 3) {
                    gort::yield_now();
                }
                finished[r].fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        for k in 0..4u64 {
            let (wg, finished) = (wg.clone(), finished.clone());
            waiters.push(gort::go!(move || {
                let ok = if k < 2 {
                    wg.wait_timeout(Duration::from_micros(k * 20))
                } else {
                    wg.wait();
                    true
                };
                // Never early: success means this round's workers all finished.
                !ok || finished[r].load(Ordering::SeqCst) == WORKERS
            }));
        }
        while wg.count() != 0 {
            gort::yield_now();
        }
    }
    for h in waiters {
        assert!(h.join().unwrap(), "a waiter was released early");
    }
    assert_eq!(wg.count(), 0);
}

#[test]
fn wait_group_wait_timeout() {
    if is_child("wait_group_wait_timeout") {
        wait_timeouts();
        return;
    }
    for procs in ["1", "2", "4"] {
        assert_success(&run_child(
            "wait_group_wait_timeout",
            &[("GORT_MAXPROCS", procs)],
        ));
    }
}

fn submit_timeouts() {
    let pool = Pool::new(2).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = gort::chan::bounded::<()>(0);
    for _ in 0..2 {
        let (rx, ran) = (rx.clone(), ran.clone());
        pool.submit(move || {
            rx.recv().unwrap();
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    // At capacity: each times out, its task dropped unrun, nothing left waiting.
    for _ in 0..5 {
        let ran = ran.clone();
        let r = pool.submit_timeout(
            move || {
                ran.fetch_add(100, Ordering::SeqCst);
            },
            SHORT,
        );
        assert_eq!(r, Err(PoolError::Timeout));
        assert_eq!(pool.waiting(), 0);
    }
    // From a G, a waiter served by a worker as it frees up.
    let p = Arc::new(pool);
    let (p2, ran2) = (p.clone(), ran.clone());
    let waiter = gort::go!(move || {
        p2.submit_timeout(
            move || {
                ran2.fetch_add(1, Ordering::SeqCst);
            },
            LONG,
        )
    });
    while p.waiting() != 1 {
        gort::yield_now();
    }
    tx.send(()).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    tx.send(()).unwrap();
    p.release_timeout(LONG).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 3);
}

#[test]
fn pool_submit_timeout() {
    if is_child("pool_submit_timeout") {
        submit_timeouts();
        return;
    }
    for procs in ["1", "2", "4"] {
        assert_success(&run_child(
            "pool_submit_timeout",
            &[("GORT_MAXPROCS", procs)],
        ));
    }
}
