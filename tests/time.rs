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

mod common;
use common::{assert_success, is_child, rss_kib, run_child};

/// The loop idiom `select! { recv(work), recv(time::after(1 h)) }`: each abandoned timer is
/// cancelled when its channel goes and swept from the heap, so a million iterations leave
/// the timer count and the memory flat (before: 228 MB for a million, for an hour).
fn abandoned_timers() {
    use gort::{chan, select, time};
    let (tx, rx) = chan::bounded::<u32>(1);
    let run = |n: u32| {
        for i in 0..n {
            tx.send(i).unwrap();
            select! {
                recv(rx) -> m => assert_eq!(m, Ok(i)),
                recv(time::after(Duration::from_secs(3600))) -> _ => unreachable!(),
            }
        }
    };
    run(10_000);
    let (timers0, rss0) = (gort::stats().timers, rss_kib());
    run(1_000_000);
    let (timers1, rss1) = (gort::stats().timers, rss_kib());
    assert!(timers1 < 4_096, "{timers0} -> {timers1} timer entries");
    assert!(
        rss1 < rss0 + 32 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    // The same from inside a green thread, with tickers dropped too.
    gort::go!(|| {
        for _ in 0..100_000 {
            drop(time::tick(Duration::from_secs(3600)));
            drop(time::after(Duration::from_secs(3600)));
        }
    })
    .join()
    .unwrap();
    assert!(gort::stats().timers < 4_096);
    // A timer whose receiver is kept still fires, and one dropped after firing is fine.
    let r = time::after(Duration::from_millis(1));
    assert!(r.recv().is_ok());
    drop(r);
    let t = time::tick(Duration::from_millis(1));
    assert!(t.recv().is_ok() && t.recv().is_ok());
}

#[test]
fn abandoned_after_timers_cost_nothing() {
    if is_child("abandoned_after_timers_cost_nothing") {
        abandoned_timers();
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child(
            "abandoned_after_timers_cost_nothing",
            &[("GORT_MAXPROCS", procs)],
        );
        assert_success(&o);
    }
}
