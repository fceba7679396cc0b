//! A bounded-parallel job runner with a global timeout, the Go way: a semaphore acquired in
//! the spawner and released in the green thread, a WaitGroup, and a context that every job
//! watches; no helper green thread for the deadline.
//!
//! ```text
//! cargo run --release --example jobs                 # 40 jobs of 1 – 40 ms, 8 at a time, 1 s budget
//! cargo run --release --example jobs -- 200 150      # 200 jobs, a 150 ms budget: some are cancelled
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort::context::{self, Context};
use gort::sync::{Semaphore, WaitGroup};
use gort::{select, time};

/// A job: sleeps `ms` milliseconds in 1 ms steps, stopping early if the context is done.
/// Returns whether it ran to completion.
fn job(ctx: &Context, ms: u64) -> bool {
    for _ in 0..ms {
        select! {
            recv(ctx.done()) -> _ => return false,
            recv(time::after(Duration::from_millis(1))) -> _ => {}
        }
    }
    true
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let jobs = args.next().flatten().unwrap_or(40);
    let budget = Duration::from_millis(args.next().flatten().unwrap_or(1_000));
    let parallel = 8;

    let t0 = Instant::now();
    let (ctx, cancel) = context::with_timeout(&context::background(), budget);
    let sem = Arc::new(Semaphore::new(parallel));
    let wg = WaitGroup::new();
    let (done, cancelled, not_started) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );

    for i in 0..jobs {
        // Wait for a slot, but not past the deadline.
        let left = ctx
            .deadline()
            .map_or(budget, |d| d.saturating_duration_since(Instant::now()));
        let Some(permit) = sem.clone().acquire_owned_timeout(left) else {
            not_started.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if ctx.is_done() {
            not_started.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        wg.add(1);
        let (ctx, wg, done, cancelled) = (ctx.clone(), wg.clone(), done.clone(), cancelled.clone());
        gort::go!(move || {
            let ms = 1 + (i * 7) % 40;
            if job(&ctx, ms) {
                done.fetch_add(1, Ordering::Relaxed);
            } else {
                cancelled.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit); // the slot is free again (before `done`, so the count below is exact)
            wg.done();
        });
    }

    // Wait for the running jobs, at most until the deadline; then cancel and collect them.
    let left = ctx
        .deadline()
        .map_or(budget, |d| d.saturating_duration_since(Instant::now()));
    if !wg.wait_timeout(left) {
        cancel.cancel();
        wg.wait();
    }
    println!(
        "{jobs} jobs, {parallel} at a time, budget {budget:?}: {} done, {} cancelled, {} not \
         started ({}); {:.1} ms",
        done.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
        not_started.load(Ordering::Relaxed),
        ctx.err().map_or("in time".to_string(), |e| e.to_string()),
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(sem.available_permits(), parallel, "every slot came back");
}
