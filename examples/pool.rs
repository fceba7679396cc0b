//! The pool against raw `go!`, a semaphore-bounded `go!`, and a fixed set of OS threads,
//! side by side in one run (ants' own benchmark method), on two workloads:
//!
//! - **sleep**: 1,000,000 tasks that each `gort::sleep(10 ms)` (std: `std::thread::sleep`);
//! - **cpu**: 1,000,000 short CPU tasks, where the cost of starting a task dominates.
//!
//! For each: wall time and peak RSS growth (VmRSS sampled every 2 ms on an OS thread).
//! Run: `cargo run --release --example pool`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::pool::Pool;
use gort::sync::{Semaphore, WaitGroup};

const TASKS: usize = 1_000_000;
const POOL_SIZE: usize = 50_000;
/// A pool sized for CPU-bound tasks (the CPU workload only).
const SMALL_POOL: usize = 1_000;
/// OS threads of the std baseline: as many as this machine runs comfortably at once
/// (it fails near 16,400).
const STD_THREADS: usize = 10_000;

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs `f`, returning (wall ms, peak RSS growth MiB).
fn measure(f: impl FnOnce()) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let base = rss_kib();
    let (s, p) = (stop.clone(), peak.clone());
    let sampler = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            p.fetch_max(rss_kib(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let t = Instant::now();
    f();
    let wall = t.elapsed().as_secs_f64() * 1e3;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth = peak
        .load(Ordering::Relaxed)
        .max(rss_kib())
        .saturating_sub(base);
    (wall, growth as f64 / 1024.0)
}

fn cpu_work(i: u64) -> u64 {
    // A few hundred nanoseconds of arithmetic.
    let mut x = i | 1;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn raw_go(sleep: bool, sink: Arc<AtomicU64>) {
    let wg = WaitGroup::new();
    for i in 0..TASKS as u64 {
        wg.add(1);
        let (wg, sink) = (wg.clone(), sink.clone());
        drop(gort::go!(move || {
            if sleep {
                gort::sleep(Duration::from_millis(10));
            } else {
                sink.fetch_add(cpu_work(i) & 1, Ordering::Relaxed);
            }
            wg.done();
        }));
    }
    wg.wait();
}

fn semaphore_go(sleep: bool, sink: Arc<AtomicU64>) {
    let sem = Arc::new(Semaphore::new(POOL_SIZE));
    let wg = WaitGroup::new();
    for i in 0..TASKS as u64 {
        wg.add(1);
        let permit = sem.acquire();
        std::mem::forget(permit);
        let (wg, sink, sem) = (wg.clone(), sink.clone(), sem.clone());
        drop(gort::go!(move || {
            if sleep {
                gort::sleep(Duration::from_millis(10));
            } else {
                sink.fetch_add(cpu_work(i) & 1, Ordering::Relaxed);
            }
            sem.add_permits(1);
            wg.done();
        }));
    }
    wg.wait();
}

fn pool(size: usize, sleep: bool, sink: Arc<AtomicU64>) {
    let pool = Pool::new(size).unwrap();
    let wg = WaitGroup::new();
    for i in 0..TASKS as u64 {
        wg.add(1);
        let (wg, sink) = (wg.clone(), sink.clone());
        pool.submit(move || {
            if sleep {
                gort::sleep(Duration::from_millis(10));
            } else {
                sink.fetch_add(cpu_work(i) & 1, Ordering::Relaxed);
            }
            wg.done();
        })
        .unwrap();
    }
    wg.wait();
    pool.release();
}

/// The std baseline: a fixed set of OS threads draining a channel of boxed closures.
fn std_threads(threads: usize, sleep: bool, sink: Arc<AtomicU64>) {
    type Job = Box<dyn FnOnce() + Send>;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(threads * 2);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let rx = rx.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || loop {
                    let job = rx.lock().unwrap().recv();
                    match job {
                        Ok(j) => j(),
                        Err(_) => return,
                    }
                })
                .expect("spawn thread")
        })
        .collect();
    for i in 0..TASKS as u64 {
        let sink = sink.clone();
        tx.send(Box::new(move || {
            if sleep {
                std::thread::sleep(Duration::from_millis(10));
            } else {
                sink.fetch_add(cpu_work(i) & 1, Ordering::Relaxed);
            }
        }))
        .unwrap();
    }
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
}

fn run_one(workload: &str, method: &str) -> (f64, f64) {
    let sleep = workload == "sleep";
    let sink = Arc::new(AtomicU64::new(0));
    let threads = if sleep {
        STD_THREADS
    } else {
        2 * gort::max_procs()
    };
    let in_g = |f: fn(bool, Arc<AtomicU64>), sink: Arc<AtomicU64>| {
        gort::go!(move || f(sleep, sink)).join().unwrap()
    };
    let pool_in_g = |size: usize, sink: Arc<AtomicU64>| {
        gort::go!(move || pool(size, sleep, sink)).join().unwrap()
    };
    let r = match method {
        "raw" => measure(|| raw_go(sleep, sink.clone())),
        "semaphore" => measure(|| semaphore_go(sleep, sink.clone())),
        "pool" => measure(|| pool(POOL_SIZE, sleep, sink.clone())),
        "small-pool" => measure(|| pool(SMALL_POOL, sleep, sink.clone())),
        "raw-g" => measure(|| in_g(raw_go, sink.clone())),
        "pool-g" => measure(|| pool_in_g(POOL_SIZE, sink.clone())),
        "small-pool-g" => measure(|| pool_in_g(SMALL_POOL, sink.clone())),
        _ => measure(|| std_threads(threads, sleep, sink.clone())),
    };
    assert!(sleep || sink.load(Ordering::Relaxed) > 0);
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--one" {
        // One measurement in a fresh process, so that peak RSS is its own.
        let (ms, mib) = run_one(&args[2], &args[3]);
        println!("{ms:.1} {mib:.1}");
        return;
    }
    println!(
        "{TASKS} tasks; pool and semaphore of {POOL_SIZE}; {} P's; each measurement in a fresh process",
        gort::max_procs()
    );
    println!(
        "| workload | method | wall ms | peak RSS growth MiB | wall vs raw go! | RSS vs raw go! |"
    );
    // Rows submitted from a G compare with raw go! submitted from a G.
    println!("|---|---|---|---|---|---|");
    let exe = std::env::current_exe().unwrap();
    for workload in ["sleep", "cpu"] {
        let mut raw = (0.0, 0.0);
        let methods: &[&str] = if workload == "sleep" {
            &["raw", "semaphore", "pool", "std", "raw-g", "pool-g"]
        } else {
            &[
                "raw",
                "semaphore",
                "pool",
                "small-pool",
                "std",
                "raw-g",
                "pool-g",
                "small-pool-g",
            ]
        };
        for &method in methods {
            let out = std::process::Command::new(&exe)
                .args(["--one", workload, method])
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text
                .split_whitespace()
                .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
            let (ms, mib) = (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN));
            if method == "raw" || method == "raw-g" {
                raw = (ms, mib);
            }
            let name = match method {
                "raw" => "raw go! + WaitGroup".to_string(),
                "raw-g" => "raw go! + WaitGroup, submitted from a G".to_string(),
                "pool-g" => format!("Pool({POOL_SIZE}), submitted from a G"),
                "semaphore" => format!("Semaphore({POOL_SIZE})-bounded go!"),
                "pool" => format!("Pool({POOL_SIZE})"),
                "small-pool" => format!("Pool({SMALL_POOL})"),
                "small-pool-g" => format!("Pool({SMALL_POOL}), submitted from a G"),
                _ => format!(
                    "{} std threads",
                    if workload == "sleep" {
                        STD_THREADS
                    } else {
                        2 * gort::max_procs()
                    }
                ),
            };
            let w = if workload == "sleep" {
                "1M x sleep 10 ms"
            } else {
                "1M short CPU tasks"
            };
            println!(
                "| {w} | {name} | {ms:.0} | {mib:.1} | {:.2}x | {:.3}x |",
                ms / raw.0,
                mib / raw.1.max(0.1)
            );
        }
    }
}
