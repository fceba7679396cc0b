//! gort against `std::thread` on this machine: the README's main job.
//!
//! Every row runs gort and its baseline in the same process, one after the other, and
//! reports the ratio. Sizes differ where the baseline cannot go further: this machine runs
//! out of OS threads long before a million (std's numbers are per task, so they compare).
//!
//! Run: `cargo run --release --example compare` (GORT_MAXPROCS changes the P count).

use gort::chan;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const GORT_TASKS: u64 = 1_000_000;
const STD_TASKS: u64 = 10_000;
const GORT_PARKED: usize = 1_000_000;
const STD_PARKED: usize = 10_000;
const DEEP_PARKED: usize = 100_000;

fn per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// Best of `reps` runs of `f`, which returns the per-task time in ns.
fn best(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..reps).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// Times 10,000,000 read-modify-writes of a `Cell<u64>` key (green-local or thread-local:
/// both have `with`); ns per access.
macro_rules! local_access_loop {
    ($key:ident) => {{
        const N: u64 = 10_000_000;
        let t = Instant::now();
        for _ in 0..N {
            $key.with(|c| c.set(std::hint::black_box(c.get() + 1)));
        }
        let d = t.elapsed();
        assert_eq!($key.with(|c| c.get()), N);
        per(d, N)
    }};
}

/// Accesses to a green-local (`gort::green_local!`) inside a G.
fn gort_green_local_access() -> f64 {
    gort::green_local! {
        static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    gort::go!(|| local_access_loop!(COUNTER)).join().unwrap()
}

/// The same loop on a std `thread_local!` in an OS thread.
fn std_thread_local_access() -> f64 {
    thread_local! {
        static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    std::thread::spawn(|| local_access_loop!(COUNTER))
        .join()
        .unwrap()
}

fn gort_spawn_join_from_main() -> f64 {
    let t = Instant::now();
    let hs: Vec<_> = (0..GORT_TASKS).map(|i| gort::go!(move || i)).collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let d = t.elapsed();
    assert_eq!(sum, GORT_TASKS * (GORT_TASKS - 1) / 2);
    per(d, GORT_TASKS)
}

fn gort_spawn_join_from_g() -> f64 {
    gort::go!(|| {
        let t = Instant::now();
        let hs: Vec<_> = (0..GORT_TASKS).map(|i| gort::go!(move || i)).collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let d = t.elapsed();
        assert_eq!(sum, GORT_TASKS * (GORT_TASKS - 1) / 2);
        per(d, GORT_TASKS)
    })
    .join()
    .unwrap()
}

/// Go's fan-out: from a G, `wg.add(1)` and a detached `go!` per task, `done` in each, one
/// `wait`. Nanoseconds per task.
fn gort_waitgroup_fanout() -> f64 {
    gort::go!(|| {
        let wg = gort::sync::WaitGroup::new();
        let sum = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        for i in 0..GORT_TASKS {
            wg.add(1);
            let (wg, sum) = (wg.clone(), sum.clone());
            drop(gort::go!(move || {
                sum.fetch_add(i, Ordering::Relaxed);
                wg.done();
            }));
        }
        wg.wait();
        let d = t.elapsed();
        assert_eq!(
            sum.load(Ordering::Relaxed),
            GORT_TASKS * (GORT_TASKS - 1) / 2
        );
        per(d, GORT_TASKS)
    })
    .join()
    .unwrap()
}

/// The same with detached std threads and a counter under a `Mutex` + `Condvar` (std has no
/// wait group).
fn std_waitgroup_fanout() -> f64 {
    let wg = Arc::new((std::sync::Mutex::new(0u64), std::sync::Condvar::new()));
    let sum = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    for i in 0..STD_TASKS {
        *wg.0.lock().unwrap() += 1;
        let (wg, sum) = (wg.clone(), sum.clone());
        drop(std::thread::spawn(move || {
            sum.fetch_add(i, Ordering::Relaxed);
            let mut n = wg.0.lock().unwrap();
            *n -= 1;
            if *n == 0 {
                wg.1.notify_all();
            }
        }));
    }
    let mut n = wg.0.lock().unwrap();
    while *n != 0 {
        n = wg.1.wait(n).unwrap();
    }
    let d = t.elapsed();
    assert_eq!(sum.load(Ordering::Relaxed), STD_TASKS * (STD_TASKS - 1) / 2);
    per(d, STD_TASKS)
}

fn std_spawn_join() -> f64 {
    let t = Instant::now();
    let hs: Vec<_> = (0..STD_TASKS)
        .map(|i| std::thread::spawn(move || i))
        .collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let d = t.elapsed();
    assert_eq!(sum, STD_TASKS * (STD_TASKS - 1) / 2);
    per(d, STD_TASKS)
}

fn std_spawn_join_from_thread() -> f64 {
    std::thread::spawn(std_spawn_join).join().unwrap()
}

/// Spawns and joins `n` G's in batches of 1,000 from inside a G: the steady state, where
/// every G and stack is a recycled one.
fn gort_batches_in_g(n: u64) -> f64 {
    gort::go!(move || {
        let t = Instant::now();
        let mut sum = 0;
        for b in 0..n / 1000 {
            let hs: Vec<_> = (0..1000).map(|i| gort::go!(move || b * 1000 + i)).collect();
            sum += hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        }
        assert_eq!(sum, n * (n - 1) / 2);
        per(t.elapsed(), n)
    })
    .join()
    .unwrap()
}

/// Spawns and joins `n` threads in batches of 100 from a spawned thread.
fn std_batches(n: u64) -> f64 {
    std::thread::spawn(move || {
        let t = Instant::now();
        let mut sum = 0;
        for b in 0..n / 100 {
            let hs: Vec<_> = (0..100)
                .map(|i| std::thread::spawn(move || b * 100 + i))
                .collect();
            sum += hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        }
        assert_eq!(sum, n * (n - 1) / 2);
        per(t.elapsed(), n)
    })
    .join()
    .unwrap()
}

fn gort_yield_alone(n: u64) -> f64 {
    gort::go!(move || {
        let t = Instant::now();
        for _ in 0..n {
            gort::yield_now();
        }
        per(t.elapsed(), n)
    })
    .join()
    .unwrap()
}

fn std_yield(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        std::thread::yield_now();
    }
    per(t.elapsed(), n)
}

fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resident memory plus page tables (`VmRSS` + `VmPTE`), in KiB: a parked task's stack
/// costs both.
fn mem_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> usize {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    field("VmRSS:") + field("VmPTE:")
}

/// Recurses `level` frames of about 1 KiB each (an initialised buffer per frame).
#[inline(never)]
fn deep(level: u64) -> u64 {
    let mut buf = [level; 128];
    std::hint::black_box(&mut buf);
    let below = if level > 0 { deep(level - 1) } else { 0 };
    below + buf[7]
}

/// Deep-then-park: `n` G's each go 64 KiB deep once, come back, then park on a channel.
/// Memory (RSS + page tables) per parked G one second after the last one parked.
fn gort_deep_then_park(n: usize) -> f64 {
    let before = mem_kib();
    let parked = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = chan::bounded::<()>(0);
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let rx = rx.clone();
            let p = parked.clone();
            gort::go!(move || {
                let v = deep(64);
                p.fetch_add(1, Ordering::Relaxed);
                rx.recv().unwrap();
                v
            })
        })
        .collect();
    while parked.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_secs(1));
    let during = mem_kib();
    for _ in 0..n {
        tx.send(()).unwrap();
    }
    for h in hs {
        h.join().unwrap();
    }
    (during.saturating_sub(before) * 1024) as f64 / n as f64
}

/// The same with OS threads (128 KiB stacks), each parked on a barrier.
fn std_deep_then_park(n: usize) -> f64 {
    std_parked_bytes(n, 128 * 1024, || deep(64), Duration::from_secs(1))
}

/// Memory growth per OS thread (RSS + page tables) with `n` threads of `stack` bytes, each
/// running `work` and then blocked on a barrier, measured `settle` after the last arrived.
/// Kernel memory (the thread's kernel stack and task struct) is not counted.
fn std_parked_bytes(n: usize, stack: usize, work: fn() -> u64, settle: Duration) -> f64 {
    let before = mem_kib();
    let in_place = Arc::new(Barrier::new(n + 1));
    let release = Arc::new(Barrier::new(n + 1));
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let a = in_place.clone();
            let b = release.clone();
            std::thread::Builder::new()
                .stack_size(stack)
                .spawn(move || {
                    let v = work();
                    a.wait();
                    b.wait();
                    v
                })
                .expect("spawn thread")
        })
        .collect();
    in_place.wait();
    std::thread::sleep(settle);
    let during = mem_kib();
    release.wait();
    for h in hs {
        h.join().unwrap();
    }
    (during.saturating_sub(before) * 1024) as f64 / n as f64
}

/// Memory growth per parked G (RSS + page tables): `n` G's each blocked in `join` on the
/// one before it, the first waiting on a gate. Returns bytes per G.
fn gort_parked_rss(n: usize) -> f64 {
    let before = mem_kib();
    let started = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let mut last = gort::go!(move || {
        while !o.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        0usize
    });
    for _ in 0..n {
        let prev = last;
        let s = started.clone();
        last = gort::go!(move || {
            s.fetch_add(1, Ordering::Relaxed);
            prev.join().unwrap() + 1
        });
    }
    while started.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let during = mem_kib();
    open.store(true, Ordering::SeqCst);
    assert_eq!(last.join().unwrap(), n);
    (during.saturating_sub(before) * 1024) as f64 / n as f64
}

/// Waits until RSS has stopped falling (at least a second, at most 30 s): an idle runtime
/// gives a burst's memory back in the background.
fn settle_rss() {
    let start = Instant::now();
    let mut prev = rss_kib();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = rss_kib();
        let falling = prev.saturating_sub(now) > 512;
        prev = now;
        if (!falling && start.elapsed() > Duration::from_secs(1))
            || start.elapsed() > Duration::from_secs(30)
        {
            return;
        }
    }
}

/// Memory growth per parked OS thread (64 KiB stacks, each blocked on a barrier).
fn std_parked_rss(n: usize) -> f64 {
    std_parked_bytes(n, 64 * 1024, || 0, Duration::ZERO)
}

/// Round trips between two G's over two unbuffered channels; ns per round trip.
fn gort_ping_pong(n: u64) -> f64 {
    gort::go!(move || {
        let (ping_tx, ping_rx) = chan::bounded::<u64>(0);
        let (pong_tx, pong_rx) = chan::bounded::<u64>(0);
        let echo = gort::go!(move || {
            for v in ping_rx.iter() {
                pong_tx.send(v).unwrap();
            }
        });
        let t = Instant::now();
        for i in 0..n {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        let d = t.elapsed();
        drop(ping_tx);
        echo.join().unwrap();
        per(d, n)
    })
    .join()
    .unwrap()
}

/// The same between two OS threads over `std::sync::mpsc::sync_channel(0)`.
fn std_ping_pong(n: u64) -> f64 {
    let (ping_tx, ping_rx) = std::sync::mpsc::sync_channel::<u64>(0);
    let (pong_tx, pong_rx) = std::sync::mpsc::sync_channel::<u64>(0);
    let echo = std::thread::spawn(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    let t = Instant::now();
    for i in 0..n {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let d = t.elapsed();
    drop(ping_tx);
    echo.join().unwrap();
    per(d, n)
}

/// Skynet: a tree of G's, 10 children per node, `leaves` leaves; every node sends the sum
/// of its subtree to its parent over an unbuffered channel. Returns milliseconds.
fn gort_skynet(leaves: u64) -> f64 {
    fn node(num: u64, size: u64, out: chan::Sender<u64>) {
        if size == 1 {
            out.send(num).unwrap();
            return;
        }
        let (tx, rx) = chan::bounded(0);
        let step = size / 10;
        for i in 0..10 {
            let tx = tx.clone();
            gort::go!(move || node(num + i * step, step, tx));
        }
        drop(tx);
        out.send(rx.iter().sum()).unwrap();
    }
    let t = Instant::now();
    let (tx, rx) = chan::bounded(0);
    gort::go!(move || node(0, leaves, tx));
    let sum = rx.recv().unwrap();
    let d = t.elapsed();
    assert_eq!(sum, leaves * (leaves - 1) / 2);
    d.as_secs_f64() * 1e3
}

/// Skynet with OS threads and std channels.
fn std_skynet(leaves: u64) -> f64 {
    fn node(num: u64, size: u64, out: std::sync::mpsc::SyncSender<u64>) {
        if size == 1 {
            out.send(num).unwrap();
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let step = size / 10;
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let tx = tx.clone();
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || node(num + i * step, step, tx))
                    .expect("spawn thread")
            })
            .collect();
        drop(tx);
        out.send(rx.iter().sum()).unwrap();
        for h in hs {
            h.join().unwrap();
        }
    }
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    let h = std::thread::spawn(move || node(0, leaves, tx));
    let sum = rx.recv().unwrap();
    h.join().unwrap();
    let d = t.elapsed();
    assert_eq!(sum, leaves * (leaves - 1) / 2);
    d.as_secs_f64() * 1e3
}

/// `tasks` G's each lock a shared gort Mutex `iters` times; ns per lock+unlock.
fn gort_mutex(tasks: u64, iters: u64) -> f64 {
    let m = Arc::new(gort::sync::Mutex::new(0u64));
    let t = Instant::now();
    let hs: Vec<_> = (0..tasks)
        .map(|_| {
            let m = m.clone();
            gort::go!(move || {
                for _ in 0..iters {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let d = t.elapsed();
    assert_eq!(*m.lock(), tasks * iters);
    per(d, tasks * iters)
}

/// `threads` OS threads each lock a shared std Mutex `iters` times.
fn std_mutex(threads: u64, iters: u64) -> f64 {
    let m = Arc::new(std::sync::Mutex::new(0u64));
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..iters {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let d = t.elapsed();
    assert_eq!(*m.lock().unwrap(), threads * iters);
    per(d, threads * iters)
}

/// 4 producer G's and 4 consumer G's over one bounded(64) channel; ns per message.
fn gort_chan_throughput(msgs: u64) -> f64 {
    let (tx, rx) = chan::bounded::<u64>(64);
    let t = Instant::now();
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let tx = tx.clone();
            gort::go!(move || {
                for i in 0..msgs / 4 {
                    tx.send(i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let cs: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            gort::go!(move || rx.iter().count() as u64)
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    let got: u64 = cs.into_iter().map(|c| c.join().unwrap()).sum();
    let d = t.elapsed();
    assert_eq!(got, msgs / 4 * 4);
    per(d, got)
}

/// The same with OS threads over `std::sync::mpsc::sync_channel(64)` (one consumer: std's
/// receiver cannot be shared without a lock around it, so 4 consumers share it behind one).
fn std_chan_throughput(msgs: u64) -> f64 {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(64);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let t = Instant::now();
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..msgs / 4 {
                    tx.send(i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let cs: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                loop {
                    let r = rx.lock().unwrap().recv();
                    match r {
                        Ok(_) => n += 1,
                        Err(_) => return n,
                    }
                }
            })
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    let got: u64 = cs.into_iter().map(|c| c.join().unwrap()).sum();
    let d = t.elapsed();
    assert_eq!(got, msgs / 4 * 4);
    per(d, got)
}

/// `n` G's sleeping at once for 50–150 ms: wall time until all have woken, and how late
/// the latest was past its deadline.
fn gort_sleepers(n: u64) -> (f64, f64) {
    let latest = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let latest = latest.clone();
            gort::go!(move || {
                let d = Duration::from_millis(50 + i % 100);
                let start = Instant::now();
                gort::sleep(d);
                let late = start.elapsed().saturating_sub(d);
                latest.fetch_max(late.as_nanos() as u64, Ordering::Relaxed);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let late = latest.load(Ordering::Relaxed) as f64 / 1e6;
    (wall, late)
}

/// How late `sleep(1ms)` wakes on an otherwise idle runtime (median of 200), in µs.
fn gort_sleep_latency() -> f64 {
    gort::go!(|| {
        let mut lates: Vec<f64> = (0..200)
            .map(|_| {
                let t = Instant::now();
                gort::sleep(Duration::from_millis(1));
                (t.elapsed().as_secs_f64() - 1e-3) * 1e6
            })
            .collect();
        lates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        lates[100]
    })
    .join()
    .unwrap()
}

fn std_sleep_latency() -> f64 {
    let mut lates: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            (t.elapsed().as_secs_f64() - 1e-3) * 1e6
        })
        .collect();
    lates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lates[100]
}

/// Worst lateness (µs) of 40 sleeps of 1 - 20 ms taken by one G while the main thread keeps
/// spawning batches of 10,000 G's of 20 µs of work each (a burst waiting for its first run).
fn gort_sleep_lateness_under_burst() -> f64 {
    let sleeper = gort::go!(|| {
        (0..40u64)
            .map(|i| {
                let d = Duration::from_millis(1 + i % 20);
                let t = Instant::now();
                gort::sleep(d);
                t.elapsed().saturating_sub(d).as_secs_f64() * 1e6
            })
            .fold(0.0, f64::max)
    });
    while !sleeper.is_finished() {
        let hs: Vec<_> = (0..10_000)
            .map(|_| {
                gort::go!(|| {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(20) {}
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    }
    sleeper.join().unwrap()
}

/// The same with OS threads: 40 sleeps while 2 x CPUs threads spin.
fn std_sleep_lateness_under_load() -> f64 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..2 * gort::max_procs())
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let worst = (0..40u64)
        .map(|i| {
            let d = Duration::from_millis(1 + i % 20);
            let t = Instant::now();
            std::thread::sleep(d);
            t.elapsed().saturating_sub(d).as_secs_f64() * 1e6
        })
        .fold(0.0, f64::max);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinners.into_iter().for_each(|t| t.join().unwrap());
    worst
}

/// A consumer of 1,000,000 messages from 4 producer G's over a `bounded(64)` channel, on
/// the calling thread (the main thread, or a G), ns per message.
fn chan_consumer(msgs: u64) -> f64 {
    let (tx, rx) = chan::bounded::<u64>(64);
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let tx = tx.clone();
            gort::go!(move || {
                for i in 0..msgs / 4 {
                    tx.send(i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let t = Instant::now();
    let mut sum = 0u64;
    for v in rx.iter() {
        sum = sum.wrapping_add(v);
    }
    let el = t.elapsed();
    producers.into_iter().for_each(|h| h.join().unwrap());
    assert!(sum > 0);
    per(el, msgs)
}

/// `blocking(|| ())` from a G, ns per call.
fn gort_blocking_round_trip(n: u64) -> f64 {
    gort::go!(move || {
        let t = Instant::now();
        for i in 0..n {
            std::hint::black_box(gort::blocking(|| std::hint::black_box(i)));
        }
        per(t.elapsed(), n)
    })
    .join()
    .unwrap()
}

/// A `getppid()` system call, ns: the cheapest thing one would wrap in `blocking`.
fn syscall_round_trip(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    per(t.elapsed(), n)
}

/// Some microseconds of arithmetic.
fn spin_work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..4_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

const MIXED_TASKS: u64 = 1_000;
const MIXED_ROUNDS: u64 = 20;

/// The mixed workload's file: 64 KiB in the temp directory.
fn mixed_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("gort-compare-{}.bin", std::process::id()));
    std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
    path
}

/// 1,000 tasks, each alternating CPU work with a file read, ms. gort: G's wrapping the
/// read in `blocking`.
fn gort_mixed(path: &std::path::Path) -> f64 {
    let t = Instant::now();
    let hs: Vec<_> = (0..MIXED_TASKS)
        .map(|k| {
            let path = path.to_path_buf();
            gort::go!(move || {
                let mut acc = 0u64;
                for r in 0..MIXED_ROUNDS {
                    acc = acc.wrapping_add(spin_work(k * MIXED_ROUNDS + r));
                    let n = gort::blocking(|| std::fs::read(&path).unwrap().len());
                    acc = acc.wrapping_add(n as u64);
                }
                acc
            })
        })
        .collect();
    for h in hs {
        std::hint::black_box(h.join().unwrap());
    }
    t.elapsed().as_secs_f64() * 1e3
}

fn std_mixed(path: &std::path::Path) -> f64 {
    let t = Instant::now();
    let hs: Vec<_> = (0..MIXED_TASKS)
        .map(|k| {
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut acc = 0u64;
                    for r in 0..MIXED_ROUNDS {
                        acc = acc.wrapping_add(spin_work(k * MIXED_ROUNDS + r));
                        acc = acc.wrapping_add(std::fs::read(&path).unwrap().len() as u64);
                    }
                    acc
                })
                .unwrap()
        })
        .collect();
    for h in hs {
        std::hint::black_box(h.join().unwrap());
    }
    t.elapsed().as_secs_f64() * 1e3
}

fn row(name: &str, gort: f64, base: f64, unit: &str, note: &str) {
    let ratio = base / gort;
    println!(
        "| {name:<38} | {gort:>10.1} {unit:<4} | {base:>10.1} {unit:<4} | {ratio:>8.1}x | {note}"
    );
}

#[path = "shared/echo.rs"]
mod echo;

/// Seconds each echo measurement drives round trips.
const NET_SECS: f64 = 3.0;

/// Runs one echo measurement: a server child process (`kind`: "gort", one P, a green thread
/// per connection; or "std", a thread per connection) pinned to CPU 0, and the shared load
/// generator (one thread on an epoll loop: cheap enough that the server is what saturates)
/// pinned to CPU 1, driving `conns` connections.
/// Returns what the load generator measured and the server's peak RSS in KiB.
fn echo_run(kind: &str, conns: usize) -> (echo::Load, f64) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(&exe)
        .args(["net-server", kind])
        .env("GORT_MAXPROCS", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let out = Command::new(&exe)
        .args([
            "net-client",
            &addr,
            &conns.to_string(),
            &NET_SECS.to_string(),
        ])
        .env("GORT_MAXPROCS", "1")
        .output()
        .expect("run the load generator");
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", server.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN);
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let load = echo::Load::parse(&text).unwrap_or_else(|| {
        panic!(
            "the load generator ({conns} connections, {kind} server) reported no result: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (load, hwm)
}

/// The child-process modes of the `net` group.
fn net_child(args: &[String]) -> bool {
    match args.first().map(String::as_str) {
        Some("net-server") => {
            echo::pin_to_cpu(0);
            if args[1] == "std" {
                echo::std_server("127.0.0.1:0").unwrap();
            } else {
                let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
                println!("listening on {}", l.local_addr().unwrap());
                echo::server(l).unwrap();
            }
            true
        }
        Some("net-client") => {
            echo::pin_to_cpu(1);
            echo::raise_nofile_std();
            let load = echo::client_epoll(
                args[1].parse().unwrap(),
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
            );
            println!("{}", load.line());
            true
        }
        _ => false,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if net_child(&args) {
        return;
    }
    // `compare spawn` / `compare chan,time` / ... run only the named groups (for profiling).
    let only = std::env::args().nth(1).unwrap_or_default();
    let want = |g: &str| only.is_empty() || only.split(',').any(|o| o == g);
    let t0 = Instant::now();
    println!(
        "gort {} vs std::thread — {} P's, {} CPUs",
        env!("CARGO_PKG_VERSION"),
        gort::max_procs(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("(best of 3; ratio = std / gort, higher is better for gort)\n");
    println!(
        "| {:<38} | {:>15} | {:>15} | {:>9} | notes",
        "measure", "gort", "std::thread", "ratio"
    );
    println!("|{:-<40}|{:-<17}|{:-<17}|{:-<11}|------", "", "", "", "");

    // Warm up both (thread creation paths, the runtime's M's).
    gort::go!(|| ()).join().unwrap();
    std::thread::spawn(|| ()).join().unwrap();

    // First, while no stack has been touched: later groups leave a million stacks cached
    // and resident, and parked G's would reuse their pages.
    if want("rss") {
        let g = gort_parked_rss(GORT_PARKED);
        // The idle runtime gives the million G's memory back (after a grace period):
        // let it finish, or the baseline's RSS growth would be read against it.
        settle_rss();
        let s = std_parked_rss(STD_PARKED);
        row(
        "memory per parked task",
        g / 1024.0,
        s / 1024.0,
        "KiB",
        &format!(
            "RSS + page tables; {GORT_PARKED} G's parked at once vs {STD_PARKED} threads (64 KiB stacks; kernel memory not counted)"
        ),
    );
        settle_rss();
        let g = gort_deep_then_park(DEEP_PARKED);
        settle_rss();
        let s = std_deep_then_park(STD_PARKED);
        row(
            "memory per parked task, deep before",
            g / 1024.0,
            s / 1024.0,
            "KiB",
            &format!(
                "went 64 KiB deep once, then parked 1 s; {DEEP_PARKED} G's vs {STD_PARKED} threads (threads never give stack pages back)"
            ),
        );
    }
    if want("spawn") {
        // All gort runs first, then the baselines: thousands of OS threads coming and going
        // leave the allocator and the kernel busy for a while, which would tax whichever
        // measurement came next.
        let g_main = best(3, gort_spawn_join_from_main);
        let g_in = best(3, gort_spawn_join_from_g);
        let g_batch = best(3, || gort_batches_in_g(1_000_000));
        let s_main = best(3, std_spawn_join);
        let s_in = best(3, std_spawn_join_from_thread);
        let s_batch = best(3, || std_batches(STD_TASKS));
        row(
            "spawn+join, from main thread",
            g_main,
            s_main,
            "ns",
            &format!("{GORT_TASKS} G's vs {STD_TASKS} threads, all spawned then all joined"),
        );
        row(
            "spawn+join, from inside a task",
            g_in,
            s_in,
            "ns",
            &format!("{GORT_TASKS} G's vs {STD_TASKS} threads"),
        );
        row(
            "spawn+join, batches, inside a task",
            g_batch,
            s_batch,
            "ns",
            "batches of 1,000 G's (recycled) vs batches of 100 threads",
        );
    }
    if want("local") {
        let g = best(3, gort_green_local_access);
        let s = best(3, std_thread_local_access);
        row(
            "green-local access (Cell get+set)",
            g,
            s,
            "ns",
            "gort::green_local! in a G vs std thread_local! in a thread, 10,000,000 accesses",
        );
    }
    if want("wg") {
        let g = best(3, gort_waitgroup_fanout);
        let s = best(3, std_waitgroup_fanout);
        row(
            "WaitGroup fan-out, per task",
            g,
            s,
            "ns",
            &format!(
                "from a G: add(1) + detached go! + done, {GORT_TASKS} G's, one wait; std: {STD_TASKS} detached threads, Mutex+Condvar counter"
            ),
        );
    }
    if want("yield") {
        // After a burst, the idle runtime gives its memory back in the background (on a
        // spare core): measure on a settled runtime.
        settle_rss();
        let g = best(3, || gort_yield_alone(10_000_000));
        let s = best(3, || std_yield(1_000_000));
        row(
            "yield, one task",
            g,
            s,
            "ns",
            "G: to the scheduler and back; std: sched_yield",
        );
    }
    if want("chan") {
        settle_rss();
        let g = best(3, || gort_ping_pong(1_000_000));
        let s = best(3, || std_ping_pong(20_000));
        row(
            "ping-pong round trip, unbuffered",
            g,
            s,
            "ns",
            "two G's over two bounded(0) vs two threads over sync_channel(0)",
        );
        let g = best(3, || gort_skynet(1_000_000));
        let s = best(3, || std_skynet(10_000));
        row(
            "skynet, ms",
            g,
            s,
            "ms",
            "gort: 1,000,000 leaves (1,111,111 G's); std: 10,000 leaves only (11,111 threads)",
        );
        let g = best(3, || gort_mutex(100, 10_000));
        let s = best(3, || std_mutex(4, 250_000));
        row(
            "contended mutex, lock+unlock",
            g,
            s,
            "ns",
            "100 G's vs 4 threads, 1,000,000 increments in all",
        );
        let g = best(3, || gort_chan_throughput(2_000_000));
        let s = best(3, || std_chan_throughput(400_000));
        row(
            "channel throughput, 4 x 4, bounded(64)",
            g,
            s,
            "ns",
            "ns per message; std: sync_channel, receivers share it behind a Mutex",
        );
        let g = best(3, || gort::go!(|| chan_consumer(1_000_000)).join().unwrap());
        let m = best(3, || chan_consumer(1_000_000));
        row(
            "channel consumer: in a G vs main thread",
            g,
            m,
            "ns",
            "per message, 4 producer G's, bounded(64); baseline: the same loop on the main thread",
        );
    }
    if want("time") {
        settle_rss();
        let g = best(3, gort_sleep_latency);
        let s = best(3, std_sleep_latency);
        row(
            "sleep(1 ms) lateness, idle",
            g,
            s,
            "us",
            "median of 200; how long after its deadline the sleeper runs again",
        );
        let g = best(3, gort_sleep_lateness_under_burst);
        let s = best(3, std_sleep_lateness_under_load);
        row(
            "sleep lateness under a spawn burst",
            g,
            s,
            "us",
            "worst of 40 sleeps of 1-20 ms while batches of 10,000 fresh G's wait; std: 2 spinning threads per P",
        );
        let (wall, late) = gort_sleepers(1_000_000);
        println!(
            "| {:<38} | {:>10.0} ms   | {:>15} | {:>9} | 1,000,000 G's asleep at once for 50-150 ms; latest woke {late:.0} ms late",
            "1,000,000 sleepers, wall time", wall, "-", "-"
        );
    }
    if want("blocking") {
        settle_rss();
        let g = best(3, || gort_blocking_round_trip(10_000_000));
        let s = best(3, || syscall_round_trip(1_000_000));
        row(
            "blocking(|| ()) round trip",
            g,
            s,
            "ns",
            "from a G, P kept (fast path); baseline: one getppid() system call",
        );
        let path = mixed_file();
        let g = best(3, || gort_mixed(&path));
        let s = best(3, || std_mixed(&path));
        let _ = std::fs::remove_file(&path);
        row(
            "mixed CPU + file reads, ms",
            g,
            s,
            "ms",
            "1,000 G's vs 1,000 threads; 20 rounds each of ~10 us of work and a 64 KiB read (G's: in blocking)",
        );
    }
    if want("net") {
        // Servers in child processes: nothing of this process's runtime is involved.
        let mut gort_hwm = 0.0;
        let mut std_hwm = 0.0;
        for conns in [100, 1_000, 10_000] {
            let (g, gh) = echo_run("gort", conns);
            let (s, sh) = echo_run("std", conns);
            println!(
                "| {:<38} | {:>10.0} rt/s | {:>10.0} rt/s | {:>8.1}x | server on CPU 0 (gort: 1 P), same epoll load generator on CPU 1; 64-byte messages; failed connections: gort {}, std {}; round trip p99 / longest: gort {:.2} / {:.1} ms, std {:.2} / {:.1} ms",
                format!("echo, {conns} connections"),
                g.rate,
                s.rate,
                g.rate / s.rate,
                g.failed,
                s.failed,
                g.p99_us / 1e3,
                g.max_us / 1e3,
                s.p99_us / 1e3,
                s.max_us / 1e3,
            );
            gort_hwm = gh;
            std_hwm = sh;
        }
        row(
            "echo server peak RSS, 10,000 conns",
            gort_hwm / 1024.0,
            std_hwm / 1024.0,
            "MiB",
            "VmHWM of the server process: a G per connection vs a thread per connection (64 KiB stacks)",
        );
    }
    println!(
        "\nlive green threads at exit: {}",
        gort::num_green_threads()
    );
    println!("total time: {:.1} s", t0.elapsed().as_secs_f64());
}
