//! A Go-style pipeline: a generator, a pool of workers and an aggregator, connected by
//! channels, stopped by a context with a global timeout (or when the input runs out).
//!
//! ```text
//! cargo run --release --example pipeline              # 200,000 numbers, 8 workers, 2 s budget
//! cargo run --release --example pipeline -- 50000000  # more than the budget allows: cancelled
//! ```
//!
//! Written as the Go version would be: every stage selects on `ctx.done()`, and no helper
//! green thread is needed for the deadline. One Rust difference: the results channel
//! closes by itself when the last worker drops its sender, where Go needs
//! `go func() { wg.Wait(); close(results) }()`.

use std::time::{Duration, Instant};

use gort::context::{self, Context};
use gort::{chan, select};

/// Some work per item: the number of steps of the Collatz sequence from `n`.
fn collatz_steps(mut n: u64) -> u64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// Sends 1..=n until the context is done.
fn generate(ctx: Context, n: u64, out: chan::Sender<u64>) {
    for i in 1..=n {
        select! {
            send(out, i) -> r => if r.is_err() { return },
            recv(ctx.done()) -> _ => return,
        }
    }
}

/// Maps items to results until the input closes or the context is done.
fn work(ctx: Context, input: chan::Receiver<u64>, out: chan::Sender<(u64, u64)>) {
    loop {
        let n = select! {
            recv(input) -> m => match m {
                Ok(n) => n,
                Err(_) => return, // input closed: done
            },
            recv(ctx.done()) -> _ => return,
        };
        let r = (n, collatz_steps(n));
        select! {
            send(out, r) -> _ => {}
            recv(ctx.done()) -> _ => return,
        }
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let workers = 8;
    let budget = Duration::from_secs(2);
    let t0 = Instant::now();
    let (ctx, cancel) = context::with_timeout(&context::background(), budget);

    let (items_tx, items_rx) = chan::bounded::<u64>(256);
    let (results_tx, results_rx) = chan::bounded::<(u64, u64)>(256);

    gort::go!({
        let ctx = ctx.clone();
        move || generate(ctx, n, items_tx)
    });
    for _ in 0..workers {
        let (ctx, input, out) = (ctx.clone(), items_rx.clone(), results_tx.clone());
        gort::go!(move || work(ctx, input, out));
    }
    // The workers hold the only senders now: the results close when the last one returns.
    drop((items_rx, results_tx));

    // The aggregator, on the main thread.
    let (mut count, mut longest) = (0u64, (0u64, 0u64));
    loop {
        select! {
            recv(results_rx) -> r => match r {
                Ok((n, steps)) => {
                    count += 1;
                    if steps > longest.1 {
                        longest = (n, steps);
                    }
                }
                Err(_) => break, // every worker finished: all input processed
            },
            recv(ctx.done()) -> _ => break,
        }
    }
    let why = ctx.err();
    cancel.cancel();
    match why {
        Some(e) => println!("stopped after {count} of {n} items: {e}"),
        None => println!("all {count} items processed"),
    }
    println!(
        "longest Collatz sequence seen: {} steps from {}; {:.1} ms",
        longest.1,
        longest.0,
        t0.elapsed().as_secs_f64() * 1e3
    );
}
