//! A seeded, randomized soak test across every primitive: channels of each flavour (with
//! `select!` and timeouts), `Mutex`, `RwLock`, `Condvar`, `WaitGroup`, `Semaphore`, the pool,
//! `sleep`, `blocking` and sockets, many green threads at once, with exact conservation of
//! every message and count checked at the end.
//!
//! `GORT_SOAK_SECS` sets how long it runs (default 2 s, for CI); `GORT_SOAK_SEED` replays a
//! run. The seed is printed at the start and in every failure message.
mod common;
use common::*;

use gort::chan::{self, Receiver, Sender};
use gort::sync::{Condvar, Mutex, RwLock, Semaphore, WaitGroup};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// xorshift64*: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORKERS: u64 = 24;
const PERMITS: usize = 3;

/// A message: (worker id, sequence number), unique per run.
type Msg = (u64, u64);

/// What every worker shares.
struct World {
    seed: u64,
    deadline: Instant,
    /// One channel of each flavour: rendezvous, buffered, unbounded.
    chans: Vec<(Sender<Msg>, Receiver<Msg>)>,
    counter: Mutex<u64>,
    rw: RwLock<u64>,
    flag: Mutex<u64>,
    cv: Condvar,
    sem: Semaphore,
    in_sem: AtomicUsize,
    pool: gort::pool::Pool,
    pool_done: AtomicU64,
    pool_wg: WaitGroup,
    blocking_done: AtomicU64,
    echo: std::net::SocketAddr,
}

/// What one worker did, to check against what the world saw.
#[derive(Default)]
struct Tally {
    sent: Vec<(u64, u64)>,
    locked: u64,
    written: u64,
    signalled: u64,
    pooled: u64,
    blocked: u64,
    echoed: u64,
    connects: u64,
}

fn worker(w: Arc<World>, id: u64) -> Tally {
    let mut rng = Rng::new(w.seed ^ (id + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let mut t = Tally::default();
    let mut seq = 0u64;
    // One connection to the echo server, replaced now and then (a fresh connection per round
    // trip would run out of ephemeral ports in a long soak).
    let mut conn: Option<gort::net::TcpStream> = None;
    while Instant::now() < w.deadline {
        match rng.below(12) {
            // Send on a random channel, giving up after a random timeout.
            0..=2 => {
                let (tx, _) = &w.chans[rng.below(3) as usize];
                let msg = (id, seq);
                seq += 1;
                if tx
                    .send_timeout(msg, Duration::from_micros(rng.below(300)))
                    .is_ok()
                {
                    t.sent.push(msg);
                }
            }
            // A select over two channels' send arms, with a timeout.
            3 => {
                let a = (id, seq);
                let b = (id, seq + 1);
                seq += 2;
                let (tx1, tx2) = (&w.chans[0].0, &w.chans[1].0);
                gort::select! {
                    send(tx1, a) -> r => { r.unwrap(); t.sent.push(a); }
                    send(tx2, b) -> r => { r.unwrap(); t.sent.push(b); }
                    default(Duration::from_micros(rng.below(200))) => {}
                }
            }
            4 => {
                *w.counter.lock() += 1;
                t.locked += 1;
            }
            5 => {
                if rng.below(3) == 0 {
                    *w.rw.write() += 1;
                    t.written += 1;
                } else {
                    let v = *w.rw.read();
                    assert!(v <= 1 << 40, "seed {}: rwlock value {v}", w.seed);
                }
            }
            6 => {
                // Condvar: bump the flag and wake a waiter, or wait briefly for a change.
                if rng.below(2) == 0 {
                    *w.flag.lock() += 1;
                    t.signalled += 1;
                    w.cv.notify_one();
                } else {
                    let g = w.flag.lock();
                    let before = *g;
                    let (g, _) = w.cv.wait_timeout(g, Duration::from_micros(rng.below(300)));
                    assert!(*g >= before, "seed {}: condvar flag went back", w.seed);
                }
            }
            7 => {
                // A semaphore bounds how many are inside at once.
                if let Some(p) = w.sem.acquire_timeout(Duration::from_micros(rng.below(500))) {
                    let inside = w.in_sem.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(
                        inside <= PERMITS,
                        "seed {}: {inside} inside the semaphore",
                        w.seed
                    );
                    if rng.below(2) == 0 {
                        gort::yield_now();
                    }
                    w.in_sem.fetch_sub(1, Ordering::SeqCst);
                    drop(p);
                }
            }
            8 => {
                // Fan out and wait: a WaitGroup over a few fresh green threads.
                let wg = WaitGroup::new();
                let n = 1 + rng.below(4);
                let hits = Arc::new(AtomicU64::new(0));
                for _ in 0..n {
                    wg.add(1);
                    let (wg, hits) = (wg.clone(), hits.clone());
                    gort::go!(move || {
                        hits.fetch_add(1, Ordering::SeqCst);
                        wg.done();
                    });
                }
                wg.wait();
                assert_eq!(hits.load(Ordering::SeqCst), n, "seed {}", w.seed);
            }
            9 => {
                // The pool: each task counted once, whether it ran or was refused.
                w.pool_wg.add(1);
                let w2 = w.clone();
                let ok = w
                    .pool
                    .submit_timeout(
                        move || {
                            w2.pool_done.fetch_add(1, Ordering::SeqCst);
                            w2.pool_wg.done();
                        },
                        Duration::from_micros(rng.below(500)),
                    )
                    .is_ok();
                if ok {
                    t.pooled += 1;
                } else {
                    w.pool_wg.done();
                }
            }
            10 => {
                if rng.below(2) == 0 {
                    gort::time::sleep(Duration::from_micros(rng.below(400)));
                } else {
                    let us = rng.below(200);
                    gort::blocking(|| std::thread::sleep(Duration::from_micros(us)));
                    w.blocking_done.fetch_add(1, Ordering::SeqCst);
                    t.blocked += 1;
                }
            }
            _ => {
                // A socket round trip through the echo server.
                if conn.is_none() || rng.below(50) == 0 {
                    let c = gort::net::TcpStream::connect(w.echo);
                    let c = c.unwrap_or_else(|e| panic!("seed {}: connect: {e}", w.seed));
                    // Small echoes back and forth: no Nagle delays.
                    c.set_nodelay(true).unwrap();
                    conn = Some(c);
                    t.connects += 1;
                }
                let s = conn.as_mut().expect("connected above");
                let n = 1 + rng.below(2_000) as usize;
                let out: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                s.write_all(&out)
                    .unwrap_or_else(|e| panic!("seed {}: write: {e}", w.seed));
                let mut back = vec![0u8; n];
                s.read_exact(&mut back)
                    .unwrap_or_else(|e| panic!("seed {}: read: {e}", w.seed));
                assert_eq!(back, out, "seed {}: echo mismatch", w.seed);
                t.echoed += 1;
            }
        }
    }
    t
}

fn soak(secs: f64, seed: u64) {
    println!("soak: seed {seed}, {secs} s (replay with GORT_SOAK_SEED={seed})");
    let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo = listener.local_addr().unwrap();
    let echo_conns = Arc::new(AtomicU64::new(0));
    let ec = echo_conns.clone();
    let _server = gort::go!(move || loop {
        let (mut c, _) = match listener.accept() {
            Ok(x) => x,
            Err(_) => continue,
        };
        ec.fetch_add(1, Ordering::SeqCst);
        c.set_nodelay(true).unwrap();
        gort::go!(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 || c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    });
    let world = Arc::new(World {
        seed,
        deadline: Instant::now() + Duration::from_secs_f64(secs),
        chans: vec![chan::bounded(0), chan::bounded(4), chan::unbounded()],
        counter: Mutex::new(0),
        rw: RwLock::new(0),
        flag: Mutex::new(0),
        cv: Condvar::new(),
        sem: Semaphore::new(PERMITS),
        in_sem: AtomicUsize::new(0),
        pool: gort::pool::Pool::new(8).unwrap(),
        pool_done: AtomicU64::new(0),
        pool_wg: WaitGroup::new(),
        blocking_done: AtomicU64::new(0),
        echo,
    });
    // One consumer per channel, taking messages until the channel closes.
    let consumers: Vec<_> = world
        .chans
        .iter()
        .map(|(_, rx)| {
            let rx = rx.clone();
            gort::go!(move || {
                let mut got = Vec::new();
                let mut rng = Rng::new(7);
                while let Ok(m) = rx.recv() {
                    got.push(m);
                    if rng.below(64) == 0 {
                        gort::yield_now();
                    }
                }
                got
            })
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let w = world.clone();
            gort::go!(move || worker(w, id))
        })
        .collect();
    let tallies: Vec<Tally> = workers.into_iter().map(|h| h.join().unwrap()).collect();
    // Close the channels: drop the world's senders (the workers' clones are gone).
    world.pool_wg.wait();
    let world = match Arc::try_unwrap(world) {
        Ok(w) => w,
        Err(_) => panic!("seed {seed}: a pool task still holds the world"),
    };
    let World {
        chans,
        counter,
        rw,
        flag,
        pool,
        pool_done,
        blocking_done,
        ..
    } = world;
    drop(chans);
    let received: Vec<(u64, u64)> = consumers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    // Every message sent arrived exactly once, and nothing else did.
    let mut seen: HashMap<(u64, u64), u32> = HashMap::new();
    for m in &received {
        *seen.entry(*m).or_default() += 1;
    }
    let sent: Vec<(u64, u64)> = tallies
        .iter()
        .flat_map(|t| t.sent.iter().copied())
        .collect();
    assert_eq!(
        received.len(),
        sent.len(),
        "seed {seed}: messages lost or duplicated"
    );
    for m in &sent {
        assert_eq!(seen.get(m), Some(&1), "seed {seed}: message {m:?}");
    }
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    assert_eq!(
        *counter.lock(),
        sum(|t| t.locked),
        "seed {seed}: mutex count"
    );
    assert_eq!(*rw.read(), sum(|t| t.written), "seed {seed}: rwlock count");
    assert_eq!(
        *flag.lock(),
        sum(|t| t.signalled),
        "seed {seed}: condvar flag"
    );
    assert_eq!(
        pool_done.load(Ordering::SeqCst),
        sum(|t| t.pooled),
        "seed {seed}: pool"
    );
    assert_eq!(
        blocking_done.load(Ordering::SeqCst),
        sum(|t| t.blocked),
        "seed {seed}: blocking"
    );
    assert_eq!(
        echo_conns.load(Ordering::SeqCst),
        sum(|t| t.connects),
        "seed {seed}: echo"
    );
    pool.release();
    println!(
        "soak: {} messages, {} locks, {} pool tasks, {} blocking calls, {} echoes",
        sent.len(),
        sum(|t| t.locked),
        sum(|t| t.pooled),
        sum(|t| t.blocked),
        sum(|t| t.echoed)
    );
}

fn settings() -> (f64, u64) {
    let secs = std::env::var("GORT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(2.0);
    let seed = std::env::var("GORT_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    (secs, seed)
}

#[test]
fn soak_every_primitive() {
    let (secs, seed) = settings();
    soak(secs, seed);
}

/// The same soak with one P and with four (in child processes: the P count is read once).
#[test]
fn soak_with_one_and_four_ps() {
    const NAME: &str = "soak_with_one_and_four_ps";
    if is_child(NAME) {
        let (secs, seed) = settings();
        soak((secs / 2.0).max(0.5), seed);
        return;
    }
    let (_, seed) = settings();
    let seed = seed.to_string();
    for procs in ["1", "4"] {
        let o = run_child_with_deadline(
            NAME,
            &[("GORT_MAXPROCS", procs), ("GORT_SOAK_SEED", &seed)],
            Duration::from_secs(600),
        );
        assert_success(&o);
    }
}
