//! An idle runtime gives a burst's memory back — deep stack pages and spare G structs, down
//! to the documented floor — by itself: nothing in these tests gives the runtime new work
//! while they wait. Each burst runs in a child process (RSS is per process), under 1 and 2
//! P's. No timing is asserted: the waits are generous bounds that only turn a hang into a
//! failure.
mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The floor of spare G structs an idle runtime keeps (docs/CAVEATS.md).
const SPARE_G_FLOOR: usize = 16 * 1024;

#[inline(never)]
fn touch_deep(bytes: usize) -> usize {
    let mut buf = [0u8; 100 * 1024];
    let n = bytes.min(buf.len());
    for i in (0..n).step_by(512) {
        buf[i] = i as u8;
    }
    std::hint::black_box(&mut buf);
    buf[n / 2] as usize
}

fn dump_smaps() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut cur = String::new();
    for l in smaps.lines() {
        if !l.contains(':') || l.split_whitespace().next().unwrap().contains('-') {
            cur = l.to_string();
        } else if let Some(v) = l.strip_prefix("Rss:") {
            let kb: usize = v.trim().trim_end_matches("kB").trim().parse().unwrap();
            if kb > 1024 {
                println!("{kb} KiB: {cur}");
            }
        }
    }
}

fn run_both(test: &str) {
    // With the stack shrinker off: these tests look at what an idle runtime gives back of
    // finished G's (tests/shrink.rs covers parked ones), and the shrinker would give the
    // burst's deep pages back before the peak is read.
    for procs in ["1", "2"] {
        let o = run_child_with_deadline(
            test,
            &[("GORT_MAXPROCS", procs), ("GORT_STACK_SHRINK", "0")],
            Duration::from_secs(240),
        );
        assert_success(&o);
        println!("GORT_MAXPROCS={procs}: {}", stdout(&o));
    }
}

/// 4,000 G's each hold about 100 KiB of stack at once (400 MiB), then all finish and are
/// joined: RSS comes back to within the warm-stack floor (1,024 stacks keep their top
/// 16 KiB) while the runtime stays idle.
#[test]
fn deep_burst_memory_comes_back_while_idle() {
    if is_child("deep_burst_memory_comes_back_while_idle") {
        let n = 4_000;
        gort::go!(|| ()).join().unwrap();
        let before = rss_kib();
        let ready = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = gort::chan::bounded::<()>(0);
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let ready = ready.clone();
                let rx = rx.clone();
                gort::go!(move || {
                    let r = touch_deep(100 * 1024);
                    ready.fetch_add(1, Ordering::SeqCst);
                    let _ = rx.recv();
                    r
                })
            })
            .collect();
        wait_for(&ready, n);
        let peak = rss_kib();
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
        assert!(
            peak > before + 300 * 1024,
            "the burst touched too little: {before} -> {peak} KiB"
        );
        // The floor: 1,024 warm stacks x 16 KiB, plus the P caches' tops and slack.
        let bound = before + 48 * 1024;
        let back = eventually(|| rss_kib() < bound);
        let now = rss_kib();
        println!("RSS KiB: before {before}, peak {peak}, idle {now}");
        assert!(
            back,
            "deep stacks not given back while idle: {before} -> {peak} -> {now} KiB"
        );
        return;
    }
    run_both("deep_burst_memory_comes_back_while_idle");
}

/// 200,000 G's park at once, are woken and joined from the main thread (which then holds
/// the last reference to each: their G structs are freed off the runtime's threads, after
/// every M has gone idle). The spare G structs come down to the floor and RSS near where it
/// was, with no new work; once done, the idle runtime uses no CPU. Then the runtime still
/// works, and a second round of work that starts while memory is being given back loses
/// nothing.
#[test]
fn parked_burst_memory_comes_back_while_idle() {
    if is_child("parked_burst_memory_comes_back_while_idle") {
        let burst = |n: usize| {
            let ready = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = gort::chan::bounded::<()>(0);
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let ready = ready.clone();
                    let rx = rx.clone();
                    gort::go!(move || {
                        ready.fetch_add(1, Ordering::Relaxed);
                        let _ = rx.recv();
                        i
                    })
                })
                .collect();
            wait_for(&ready, n);
            let peak = rss_kib();
            drop(tx);
            let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, n * (n - 1) / 2);
            peak
        };
        let n = 200_000;
        gort::go!(|| ()).join().unwrap();
        let before = rss_kib();
        let peak = burst(n);
        let spare = gort::__free_green_threads();
        assert!(
            spare > 100_000,
            "the burst's G structs were not kept for reuse: {spare}"
        );
        // The floor: 1,024 warm stacks (each with at most its top 16 KiB resident; a parked
        // G touched one or two pages), 16,384 spare G structs (3.4 MiB), and slack.
        let bound = before + 32 * 1024;
        let back =
            eventually(|| gort::__free_green_threads() <= SPARE_G_FLOOR && rss_kib() < bound);
        let now = rss_kib();
        let spare_now = gort::__free_green_threads();
        println!(
            "RSS KiB: before {before}, peak {peak}, idle {now}; spare G's {spare} -> {spare_now}"
        );
        if std::env::var("SMAPS").is_ok() {
            dump_smaps();
        }
        assert!(back, "burst not given back while idle: RSS {before} -> {peak} -> {now} KiB, spare G's {spare} -> {spare_now}");
        // Done: an idle runtime costs no CPU.
        std::thread::sleep(Duration::from_millis(200));
        let t0 = cpu_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let used = (cpu_ticks() - t0) * 1000 / ticks_per_second();
        println!("CPU over 1 s idle after giving memory back: {used} ms");
        assert!(used < 50, "an idle runtime used {used} ms of CPU in 1 s");

        // A second burst, and work that starts while its memory is being given back
        // (an idle M stops in the middle when handed a P): sleeps, spawns and joins, counted.
        burst(n);
        let woke = Arc::new(AtomicUsize::new(0));
        let sleepers: Vec<_> = (0..1_000)
            .map(|i| {
                let woke = woke.clone();
                gort::go!(move || {
                    gort::sleep(Duration::from_micros(100 + (i % 7) * 100));
                    woke.fetch_add(1, Ordering::SeqCst);
                    let inner: usize = (0..10).map(|j| gort::go!(move || j).join().unwrap()).sum();
                    inner
                })
            })
            .collect();
        let total: usize = sleepers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1_000 * 45);
        assert_eq!(woke.load(Ordering::SeqCst), 1_000);
        let back =
            eventually(|| gort::__free_green_threads() <= SPARE_G_FLOOR && rss_kib() < bound);
        assert!(
            back,
            "second burst not given back: RSS {} KiB, spare G's {}",
            rss_kib(),
            gort::__free_green_threads()
        );
        return;
    }
    run_both("parked_burst_memory_comes_back_while_idle");
}
