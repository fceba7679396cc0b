//! Criterion benches of the pool: the cost per task of short tasks through a `Pool` against
//! raw `go!` (each task: a few hundred ns of arithmetic, then a WaitGroup `done`), with the
//! submitter on a green thread and on the main thread, measured in the same run; plus
//! `PoolWithFunc::invoke`. `cargo bench --bench pool`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gort::pool::{Pool, PoolWithFunc};
use gort::sync::WaitGroup;

fn work(i: u64) -> u64 {
    let mut x = i | 1;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// One task's captures: an index, the result sink, the WaitGroup.
struct Job {
    i: u64,
    sink: Arc<AtomicU64>,
    wg: WaitGroup,
}

impl Job {
    fn run(self) {
        self.sink.fetch_add(work(self.i) & 1, Ordering::Relaxed);
        self.wg.done();
    }
}

/// `n` jobs through `spawn_one`, then waits for all; returns the time taken.
fn run_jobs(n: u64, spawn_one: impl Fn(Job)) -> Duration {
    let sink = Arc::new(AtomicU64::new(0));
    let wg = WaitGroup::new();
    let t = Instant::now();
    for i in 0..n {
        wg.add(1);
        spawn_one(Job {
            i,
            sink: sink.clone(),
            wg: wg.clone(),
        });
    }
    wg.wait();
    t.elapsed()
}

fn raw(n: u64) -> Duration {
    run_jobs(n, |job| drop(gort::go!(move || job.run())))
}

fn pooled(n: u64, pool: &Pool) -> Duration {
    run_jobs(n, |job| pool.submit(move || job.run()).unwrap())
}

fn in_g<F: FnOnce() -> Duration + Send + 'static>(f: F) -> Duration {
    gort::go!(f).join().unwrap()
}

fn short_tasks(c: &mut Criterion) {
    let mut g = c.benchmark_group("short_tasks");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("raw_go", "from_g"), |b| {
        b.iter_custom(|n| in_g(move || raw(n)))
    });
    for size in [1_000usize, 50_000] {
        let pool = Arc::new(Pool::new(size).unwrap());
        g.bench_function(BenchmarkId::new(format!("pool_{size}"), "from_g"), |b| {
            b.iter_custom(|n| {
                let pool = pool.clone();
                in_g(move || pooled(n, &pool))
            })
        });
    }
    g.bench_function(BenchmarkId::new("raw_go", "from_main"), |b| {
        b.iter_custom(raw)
    });
    let pool = Pool::new(1_000).unwrap();
    g.bench_function(BenchmarkId::new("pool_1000", "from_main"), |b| {
        b.iter_custom(|n| pooled(n, &pool))
    });
    g.finish();
}

fn invoke(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_with_func");
    g.throughput(Throughput::Elements(1));
    let wg = WaitGroup::new();
    let w = wg.clone();
    let pool = Arc::new(
        PoolWithFunc::new(1_000, move |i: u64| {
            std::hint::black_box(work(i));
            w.done();
        })
        .unwrap(),
    );
    g.bench_function(BenchmarkId::new("invoke_1000", "from_g"), |b| {
        b.iter_custom(|n| {
            let (pool, wg) = (pool.clone(), wg.clone());
            in_g(move || {
                let t = Instant::now();
                for i in 0..n {
                    wg.add(1);
                    pool.invoke(i).unwrap();
                }
                wg.wait();
                t.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = short_tasks, invoke
}
criterion_main!(benches);
