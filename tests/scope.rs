//! gort::scope: green threads that borrow from the caller's stack; all joined before it
//! returns; panics propagate. Exact counts, under 1, 2 and 4 P's.

mod common;
use common::{assert_success, is_child, run_child};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

fn borrowing() {
    for from_g in [false, true] {
        let run = || {
            // Mutable borrows of disjoint chunks, shared borrows of a slice.
            let input: Vec<u64> = (0..10_000).collect();
            let mut sums = vec![0u64; 100];
            gort::scope(|s| {
                for (chunk, sum) in input.chunks(100).zip(sums.iter_mut()) {
                    s.spawn(move || {
                        gort::yield_now();
                        *sum = chunk.iter().sum();
                    });
                }
            });
            assert_eq!(sums.iter().sum::<u64>(), 10_000 * 9_999 / 2);
            // Joined results that borrow; nested spawns through the shared scope.
            let count = AtomicUsize::new(0);
            let text = String::from("scoped");
            let n = gort::scope(|s| {
                let h = s.spawn(|| {
                    for _ in 0..10 {
                        s.spawn(|| count.fetch_add(1, Ordering::SeqCst));
                    }
                    text.as_str()
                });
                let got = h.join().unwrap();
                assert_eq!(got, "scoped");
                7
            });
            assert_eq!(n, 7);
            // Every nested green thread finished before `scope` returned.
            assert_eq!(count.load(Ordering::SeqCst), 10);
            // A thousand green threads, each counted once.
            let hits = AtomicUsize::new(0);
            gort::scope(|s| {
                for _ in 0..1_000 {
                    s.spawn(|| hits.fetch_add(1, Ordering::Relaxed));
                }
            });
            assert_eq!(hits.load(Ordering::Relaxed), 1_000);
        };
        if from_g {
            gort::go!(run).join().unwrap();
        } else {
            run();
        }
    }
}

#[test]
fn scoped_green_threads_borrow_and_finish() {
    if is_child("scoped_green_threads_borrow_and_finish") {
        borrowing();
        return;
    }
    for procs in ["1", "2", "4"] {
        assert_success(&run_child(
            "scoped_green_threads_borrow_and_finish",
            &[("GORT_MAXPROCS", procs)],
        ));
    }
}

#[test]
fn scoped_panics_propagate() {
    std::panic::set_hook(Box::new(|_| {}));
    // An unjoined panic: scope panics, after every other green thread has finished.
    let finished = AtomicUsize::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        gort::scope(|s| {
            s.spawn(|| panic!("scoped-quiet"));
            for _ in 0..100 {
                s.spawn(|| {
                    gort::yield_now();
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    }));
    assert!(r.is_err());
    assert_eq!(finished.load(Ordering::SeqCst), 100);
    // A joined panic is the joiner's: scope returns normally.
    let v = gort::scope(|s| {
        let h = s.spawn(|| -> u32 { panic!("scoped-quiet") });
        assert!(h.join().is_err());
        5
    });
    assert_eq!(v, 5);
    // The closure's own panic is resumed, once the green threads are done.
    let done = AtomicUsize::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        gort::scope(|s| {
            s.spawn(|| {
                gort::yield_now();
                done.fetch_add(1, Ordering::SeqCst);
            });
            panic!("scoped-quiet");
        })
    }));
    assert!(r.is_err());
    assert_eq!(done.load(Ordering::SeqCst), 1);
}
