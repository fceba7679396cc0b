//! Timers: sleep parks only the G, never returns early, and scales to many sleepers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn sleep_never_returns_early() {
    let hs: Vec<_> = [0u64, 1, 2, 5, 10, 20]
        .into_iter()
        .map(|ms| {
            gort::go!(move || {
                let d = Duration::from_millis(ms);
                let t = Instant::now();
                gort::sleep(d);
                (t.elapsed(), d)
            })
        })
        .collect();
    for h in hs {
        let (took, asked) = h.join().unwrap();
        assert!(took >= asked, "slept {took:?} for {asked:?}");
    }
    // Outside the runtime too.
    let t = Instant::now();
    gort::sleep(Duration::from_millis(3));
    assert!(t.elapsed() >= Duration::from_millis(3));
}

#[test]
fn sleeping_gs_do_not_hold_their_thread() {
    // Far more sleepers than OS threads: they all sleep at once, on a couple of M's.
    let awake = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..1000)
        .map(|_| {
            let awake = awake.clone();
            gort::go!(move || {
                gort::sleep(Duration::from_millis(50));
                awake.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(awake.load(Ordering::SeqCst), 1000);
}

#[test]
fn hundred_thousand_sleepers_all_wake() {
    let woke = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..100_000u64)
        .map(|i| {
            let woke = woke.clone();
            gort::go!(move || {
                let d = Duration::from_micros(1000 + (i * 7919) % 20_000);
                let t = Instant::now();
                gort::sleep(d);
                assert!(t.elapsed() >= d);
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(woke.load(Ordering::SeqCst), 100_000);
}

#[test]
fn sleep_wakes_an_idle_runtime() {
    // Nothing else runs: the only way the sleeper wakes is the idle M's timed sleep.
    for _ in 0..20 {
        let h = gort::go!(|| gort::sleep(Duration::from_millis(2)));
        h.join().unwrap();
    }
}
