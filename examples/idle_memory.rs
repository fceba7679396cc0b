//! Memory after a burst, while the runtime stays idle: how much of a burst's memory (deep
//! stack pages, spare G structs) comes back, and how soon, with no new work to trigger it.
//!
//! Two workloads, each in a fresh process:
//! - `deep`: 10,000 G's each touch about 100 KiB of stack at once, then all are joined.
//! - `parked`: 1,000,000 G's park at once (on a channel), are released, and joined.
//!
//! For each: RSS before, at the peak, right after the last join, and 1, 2 and 5 s later
//! (from `/proc/self/status`), with the runtime's spare G structs and cached stacks. Then
//! `sleep(1 ms)` lateness on a fresh runtime and while a parked burst's memory is being
//! given back.
//!
//! `cargo run --release --example idle_memory`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Touches about `bytes` of stack below the caller.
#[inline(never)]
fn touch_deep(bytes: usize) -> usize {
    let mut buf = [0u8; 4096];
    for (i, b) in buf.iter_mut().enumerate().step_by(512) {
        *b = i as u8;
    }
    let here = std::hint::black_box(&buf)[7] as usize;
    if bytes > 4096 {
        here + touch_deep(bytes - 4096)
    } else {
        here
    }
}

fn wait_for(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn deep() -> (usize, usize) {
    let n = 10_000;
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
    (peak, rss_kib())
}

fn parked() -> (usize, usize) {
    let n = 1_000_000;
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
    let mut sum = 0usize;
    for h in hs {
        sum += h.join().unwrap();
    }
    assert_eq!(sum, n * (n - 1) / 2);
    (peak, rss_kib())
}

/// Lateness of `sleep(1 ms)` in a G, `n` times in a row: (median, max) in µs.
fn sleep_lateness(n: usize) -> (f64, f64) {
    gort::go!(move || {
        let mut lates: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                gort::sleep(Duration::from_millis(1));
                (t.elapsed().as_secs_f64() - 0.001) * 1e6
            })
            .collect();
        lates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (lates[n / 2], lates[n - 1])
    })
    .join()
    .unwrap()
}

/// `sleep(1 ms)` lateness on a fresh runtime, then right after a burst of 1,000,000 parked
/// G's is joined: 2,000 sleeps cover the grace period and the memory being given back.
fn latency() {
    let (m0, x0) = sleep_lateness(500);
    parked();
    let (m1, x1) = sleep_lateness(2_000);
    println!(
        "sleep(1 ms) lateness: fresh runtime median {m0:.0} us (max {x0:.0}); while the \
         burst's memory is given back median {m1:.0} us (max {x1:.0})"
    );
}

fn main() {
    if let Some(mode) = std::env::args().nth(1) {
        gort::go!(|| ()).join().unwrap();
        if mode == "latency" {
            latency();
            return;
        }
        let before = rss_kib();
        let (peak, after) = match mode.as_str() {
            "deep" => deep(),
            "parked" => parked(),
            other => panic!("unknown mode {other}"),
        };
        let t0 = Instant::now();
        let mut line = format!(
            "{mode:7} RSS MiB: before {:.0}, peak {:.0}, after join {:.0}",
            before as f64 / 1024.0,
            peak as f64 / 1024.0,
            after as f64 / 1024.0
        );
        for s in [1u64, 2, 5] {
            std::thread::sleep(Duration::from_secs(s).saturating_sub(t0.elapsed()));
            line += &format!(", {s} s idle {:.0}", rss_kib() as f64 / 1024.0);
        }
        let st = gort::stats();
        line += &format!(
            " | spare G's {}, cached stacks {}",
            gort::__free_green_threads(),
            st.stacks_cached
        );
        println!("{line}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for mode in ["deep", "parked", "latency"] {
        let o = std::process::Command::new(&exe).arg(mode).output().unwrap();
        print!("{}", String::from_utf8_lossy(&o.stdout));
        if !o.status.success() {
            eprint!("{}", String::from_utf8_lossy(&o.stderr));
        }
    }
}
