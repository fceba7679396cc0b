//! Stack shrinking (docs/ARCHITECTURE.md, "Stack shrinking"): parked G's that once went deep
//! give their deep pages back; G's that never went deep cost the shrinker nothing; a G woken
//! while its stack is being shrunk never loses a byte of its stack. Each test runs in a child
//! process (RSS and the shrinker's counters are per process). No timing is asserted: waits
//! are bounded polls that turn a hang into a failure.
mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Recurses `level` frames of 1 KiB each, filling every frame with values derived from
/// `seed` and checking them all on the way back up; returns a checksum.
#[inline(never)]
fn deep(level: u64, seed: u64) -> u64 {
    let mut buf = [0u64; 128];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = seed ^ (level << 32) ^ i as u64;
    }
    std::hint::black_box(&mut buf);
    let below = if level > 0 { deep(level - 1, seed) } else { 0 };
    for (i, b) in buf.iter().enumerate() {
        assert_eq!(
            *b,
            seed ^ (level << 32) ^ i as u64,
            "stack value lost at depth {level}"
        );
    }
    below.wrapping_add(buf[(level % 128) as usize])
}

fn expected(level: u64, seed: u64) -> u64 {
    (0..=level).fold(0u64, |acc, l| {
        acc.wrapping_add(seed ^ (l << 32) ^ (l % 128))
    })
}

fn bytes_now() -> usize {
    (rss_kib() + pte_kib()) * 1024
}

/// Waits (a bounded poll) until the memory grown since `before` is at most 8 KiB per G for
/// `n` parked G's; returns the figure and the runtime's stats, or fails saying `what`.
fn settle_per_g(before: usize, n: usize, what: &str) -> (usize, gort::Stats) {
    let mut per_g = usize::MAX;
    let ok = eventually(|| {
        per_g = bytes_now().saturating_sub(before) / n;
        per_g <= 8 * 1024
    });
    let st = gort::stats();
    assert!(
        ok,
        "{per_g} bytes per parked G {what} (want <= 8 KiB); {st}"
    );
    (per_g, st)
}

fn run_procs(test: &str, procs: &[&str], extra: &[(&str, &str)]) {
    for p in procs {
        let mut env = vec![("GORT_MAXPROCS", *p)];
        env.extend_from_slice(extra);
        let o = run_child_with_deadline(test, &env, Duration::from_secs(240));
        assert_success(&o);
        println!("GORT_MAXPROCS={p}: {}", stdout(&o));
    }
}

/// 20,000 G's each go about 70 KiB deep once, come back, and park on a channel: within a
/// bounded wait the memory per parked G (RSS growth plus page tables) drops to at most
/// 8 KiB; woken, every G still finds all its values.
#[test]
fn deep_then_parked_stacks_are_shrunk() {
    if is_child("deep_then_parked_stacks_are_shrunk") {
        let n = 20_000usize;
        gort::go!(|| ()).join().unwrap();
        let before = bytes_now();
        let parked = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = gort::chan::bounded::<u64>(0);
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let rx = rx.clone();
                let parked = parked.clone();
                gort::go!(move || {
                    let seed = i as u64 * 7919;
                    let sum = deep(64, seed);
                    // Live across the park: checked after the wake.
                    let keep = [seed; 16];
                    parked.fetch_add(1, Ordering::SeqCst);
                    let v = rx.recv().unwrap();
                    assert!(keep.iter().all(|k| *k == seed));
                    // Deep again after the shrink: the fresh pages work.
                    assert_eq!(deep(64, seed ^ v), expected(64, seed ^ v));
                    sum
                })
            })
            .collect();
        wait_for(&parked, n);
        let (per_g, st) = settle_per_g(before, n, "after shrinking");
        assert!(st.stacks_shrunk as usize >= n / 2, "{st}");
        for _ in 0..n {
            tx.send(3).unwrap();
        }
        for (i, h) in hs.into_iter().enumerate() {
            let seed = i as u64 * 7919;
            assert_eq!(h.join().unwrap(), expected(64, seed));
        }
        println!(
            "per_g={per_g} shrunk={} bytes_shrunk={}",
            st.stacks_shrunk, st.stack_bytes_shrunk
        );
        return;
    }
    run_procs("deep_then_parked_stacks_are_shrunk", &["1", "2"], &[]);
}

/// Shallow parked G's, many shrinker epochs (1 ms each): the shrinker makes no system call.
/// (A claim about optimised builds: unoptimised, the runtime's own frames from `recv` down to
/// the switch are about 2 KiB, and with the largest stack colours they reach past the band.)
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "unoptimised frames down to a park reach the shrink band; run with --release"
)]
fn shallow_parked_gs_cost_the_shrinker_nothing() {
    if is_child("shallow_parked_gs_cost_the_shrinker_nothing") {
        let n = 20_000usize;
        let parked = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = gort::chan::bounded::<()>(0);
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let rx = rx.clone();
                let parked = parked.clone();
                gort::go!(move || {
                    let mut buf = [1u8; 512];
                    std::hint::black_box(&mut buf);
                    parked.fetch_add(1, Ordering::SeqCst);
                    rx.recv().unwrap();
                    buf.iter().map(|b| *b as usize).sum::<usize>()
                })
            })
            .collect();
        wait_for(&parked, n);
        // Many epochs pass while they stay parked (the period is 1 ms here).
        std::thread::sleep(Duration::from_millis(300));
        let st = gort::stats();
        for _ in 0..n {
            tx.send(()).unwrap();
        }
        for h in hs {
            assert_eq!(h.join().unwrap(), 512);
        }
        assert_eq!(st.shrink_syscalls, 0, "{st}");
        assert_eq!(st.stacks_shrunk, 0, "{st}");
        println!("{st}");
        return;
    }
    run_procs(
        "shallow_parked_gs_cost_the_shrinker_nothing",
        &["1", "2"],
        &[("GORT_STACK_SHRINK", "1")],
    );
}

/// The shrink race, for any way of waiting: one G per `waits` entry goes deep, keeps values
/// on its stack, counts itself parked and waits (`wait` returns the round it was woken for),
/// `rounds` times; each round `wake(r)` wakes them all, every other round only once the
/// shrinker has been at work. Each G checks its kept values and the round after every wake
/// (a message lost or duplicated shows as a wrong round), and its checksum of every frame.
fn shrink_race<W: FnMut() -> u64 + Send + 'static>(
    rounds: u64,
    waits: Vec<W>,
    mut wake: impl FnMut(u64),
) {
    let n = waits.len();
    let done = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = waits
        .into_iter()
        .enumerate()
        .map(|(i, mut wait)| {
            let done = done.clone();
            gort::go!(move || {
                let mut total = 0u64;
                for r in 0..rounds {
                    let seed = (i as u64) << 20 | r;
                    total = total.wrapping_add(deep(40, seed));
                    let keep = [seed.wrapping_mul(31); 32];
                    done.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(wait(), r, "wake-up lost or duplicated");
                    assert!(keep.iter().all(|k| *k == seed.wrapping_mul(31)));
                }
                total
            })
        })
        .collect();
    let mut shrunk_before = 0;
    for r in 0..rounds {
        wait_for(&done, n * (r as usize + 1));
        // Let some of them age past the shrinker's two epochs, then wake them all while it
        // works: alternate between waiting for shrinks and waking at once.
        if r % 2 == 0 {
            let ok = eventually(|| gort::stats().stacks_shrunk > shrunk_before);
            assert!(ok, "the shrinker never ran");
            shrunk_before = gort::stats().stacks_shrunk;
        }
        wake(r);
    }
    for (i, h) in hs.into_iter().enumerate() {
        let want = (0..rounds).fold(0u64, |a, r| {
            a.wrapping_add(expected(40, (i as u64) << 20 | r))
        });
        assert_eq!(h.join().unwrap(), want);
    }
    println!("{}", gort::stats());
}

/// The race: G's park after going deep and are woken while the shrinker (1 ms epochs) works
/// on their stacks; after every wake a G checks the values it kept across the park, then
/// goes deep again and checks every frame on the way back. Rounds are counted exactly.
#[test]
fn shrinking_races_wakeups_without_losing_stack_values() {
    if is_child("shrinking_races_wakeups_without_losing_stack_values") {
        let (txs, waits): (Vec<_>, Vec<_>) = (0..300)
            .map(|_| {
                let (tx, rx) = gort::chan::bounded::<u64>(1);
                (tx, move || rx.recv().unwrap())
            })
            .unzip();
        shrink_race(40, waits, |r| {
            for tx in &txs {
                tx.send(r).unwrap();
            }
        });
        return;
    }
    run_procs(
        "shrinking_races_wakeups_without_losing_stack_values",
        &["1", "2", "4"],
        &[("GORT_STACK_SHRINK", "1")],
    );
}

/// The same race through the netpoller: G's go deep, then wait on a socket read; the main
/// thread writes one byte per round to each while the shrinker works. The poller claims a
/// parked G outright, or, finding it SHRINKING (or not parked yet), takes a handle and
/// unparks it (SHRINK_WOKEN: the shrinker queues it when done). Every byte arrives once, in
/// order, and every kept value survives.
#[test]
fn shrinking_races_socket_wakeups_without_losing_stack_values() {
    if is_child("shrinking_races_socket_wakeups_without_losing_stack_values") {
        use std::io::{Read, Write};
        let (mut ends, waits): (Vec<_>, Vec<_>) = (0..200)
            .map(|_| {
                let (mut ours, theirs) = gort::net::unix::UnixStream::pair().unwrap();
                let wait = move || {
                    let mut b = [0u8; 1];
                    ours.read_exact(&mut b).unwrap();
                    u64::from(b[0])
                };
                (theirs, wait)
            })
            .unzip();
        shrink_race(30, waits, |r| {
            for e in &mut ends {
                e.write_all(&[r as u8]).unwrap();
            }
        });
        return;
    }
    run_procs(
        "shrinking_races_socket_wakeups_without_losing_stack_values",
        &["1", "2", "4"],
        &[("GORT_STACK_SHRINK", "1")],
    );
}

/// 20,000 G's go about 70 KiB deep at the same time and die; 20,000 shallow G's spawned at
/// once after them (taking the stacks the first ones left) park on a channel. Within a
/// bounded wait, the memory per parked G is at most 8 KiB: deep pages left on recycled stacks
/// are given back (scrubbed, or shrunk under the G that inherited them), not kept unseen.
#[test]
fn deep_pages_of_dead_gs_do_not_stay_under_parked_ones() {
    if is_child("deep_pages_of_dead_gs_do_not_stay_under_parked_ones") {
        let n = 20_000usize;
        gort::go!(|| ()).join().unwrap();
        let before = bytes_now();
        // Wave 1: all deep at once (a barrier on a channel), so n stacks go deep.
        let arrived = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = gort::chan::bounded::<()>(0);
        let deep_hs: Vec<_> = (0..n)
            .map(|i| {
                let arrived = arrived.clone();
                let go_rx = go_rx.clone();
                gort::go!(move || {
                    let sum = deep_and_wait(64, i as u64, &arrived, &go_rx);
                    assert_eq!(sum, expected(64, i as u64));
                })
            })
            .collect();
        wait_for(&arrived, n);
        drop(go_tx); // every deep G wakes (closed channel) and returns
        for h in deep_hs {
            h.join().unwrap();
        }
        // Wave 2: shallow G's park at once on the stacks wave 1 left.
        let parked = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = gort::chan::bounded::<u64>(0);
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let rx = rx.clone();
                let parked = parked.clone();
                gort::go!(move || {
                    let keep = [i as u64; 16];
                    parked.fetch_add(1, Ordering::SeqCst);
                    let v = rx.recv().unwrap();
                    assert!(keep.iter().all(|k| *k == i as u64));
                    v + keep[3]
                })
            })
            .collect();
        wait_for(&parked, n);
        let (per_g, st) = settle_per_g(before, n, "on recycled deep stacks");
        for _ in 0..n {
            tx.send(1).unwrap();
        }
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), 1 + i as u64);
        }
        println!("per_g={per_g} {st}");
        return;
    }
    run_procs(
        "deep_pages_of_dead_gs_do_not_stay_under_parked_ones",
        &["1", "2"],
        &[],
    );
}

/// Like [`deep`], but at the bottom of the recursion counts itself in `arrived` and waits
/// until `go` closes, so that many G's are deep at the same time.
#[inline(never)]
fn deep_and_wait(
    level: u64,
    seed: u64,
    arrived: &AtomicUsize,
    go: &gort::chan::Receiver<()>,
) -> u64 {
    let mut buf = [0u64; 128];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = seed ^ (level << 32) ^ i as u64;
    }
    std::hint::black_box(&mut buf);
    let below = if level > 0 {
        deep_and_wait(level - 1, seed, arrived, go)
    } else {
        arrived.fetch_add(1, Ordering::SeqCst);
        assert!(go.recv().is_err());
        0
    };
    for (i, b) in buf.iter().enumerate() {
        assert_eq!(*b, seed ^ (level << 32) ^ i as u64);
    }
    below.wrapping_add(buf[(level % 128) as usize])
}
