//! Criterion benches of the core: spawn+join, yield and `blocking`, gort against std::thread, measured
//! in the same run. `cargo bench`; `GORT_MAXPROCS` sets the P count.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Spawns and joins `n` G's in batches of 1,000 (all spawned, then all joined).
fn batches_of_1000(n: u64) -> Duration {
    let t = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let hs: Vec<_> = (0..k).map(|i| gort::go!(move || i)).collect();
        for h in hs {
            std::hint::black_box(h.join().unwrap());
        }
        left -= k;
    }
    t.elapsed()
}

/// Runs `f(iters)` on a green thread and returns the time it measured.
fn in_g(iters: u64, f: fn(u64) -> Duration) -> Duration {
    gort::go!(move || f(iters)).join().unwrap()
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join");
    g.throughput(Throughput::Elements(1));
    // One at a time: spawn, then join at once (the join usually parks).
    g.bench_function(BenchmarkId::new("gort", "one_at_a_time_in_g"), |b| {
        b.iter_custom(|iters| {
            in_g(iters, |n| {
                let t = Instant::now();
                for i in 0..n {
                    std::hint::black_box(gort::go!(move || i).join().unwrap());
                }
                t.elapsed()
            })
        })
    });
    // Batches of 1,000: spawn them all, then join them all.
    g.bench_function(BenchmarkId::new("gort", "batch_1000_in_g"), |b| {
        b.iter_custom(|iters| in_g(iters, batches_of_1000))
    });
    g.bench_function(BenchmarkId::new("gort", "batch_1000_from_main"), |b| {
        b.iter_custom(batches_of_1000)
    });
    g.bench_function(BenchmarkId::new("std_thread", "one_at_a_time"), |b| {
        b.iter(|| std::thread::spawn(|| 1u64).join().unwrap())
    });
    g.bench_function(BenchmarkId::new("std_thread", "batch_100"), |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            let mut left = n;
            while left > 0 {
                let k = left.min(100);
                let hs: Vec<_> = (0..k).map(|i| std::thread::spawn(move || i)).collect();
                for h in hs {
                    std::hint::black_box(h.join().unwrap());
                }
                left -= k;
            }
            t.elapsed()
        })
    });
    g.finish();
}

fn yields(c: &mut Criterion) {
    let mut g = c.benchmark_group("yield");
    g.throughput(Throughput::Elements(1));
    g.bench_function("gort", |b| {
        b.iter_custom(|iters| {
            in_g(iters, |n| {
                let t = Instant::now();
                for _ in 0..n {
                    gort::yield_now();
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("std_thread", |b| b.iter(std::thread::yield_now));
    g.finish();
}

/// `blocking(|| ())` from a G (the fast path: the P is still there on the way out),
/// against a `getppid()` system call, the cheapest call one would wrap.
fn blocking(c: &mut Criterion) {
    let mut g = c.benchmark_group("blocking");
    g.throughput(Throughput::Elements(1));
    g.bench_function("gort_round_trip", |b| {
        b.iter_custom(|iters| {
            in_g(iters, |n| {
                let t = Instant::now();
                for i in 0..n {
                    std::hint::black_box(gort::blocking(|| std::hint::black_box(i)));
                }
                t.elapsed()
            })
        })
    });
    g.bench_function("getppid_syscall", |b| {
        // SAFETY: getppid has no preconditions.
        b.iter(|| unsafe { libc::getppid() })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = spawn_join, yields, blocking
}
criterion_main!(benches);
