//! Scheduling points that must stay scheduling points on a single P: `yield_now` lets due
//! timers and ready sockets in however long a G keeps yielding, and a timed wait that times
//! out gives way even when its deadline passed before it could park (a nanosecond's
//! timeout). Each scenario has a G retry in a loop for what a G queued behind it on the same
//! P must do; before the fix each of them hung at `GORT_MAXPROCS=1`. Children under 1, 2
//! and 4 P's, with a deadline that turns a hang into a failure; counts checked exactly.
mod common;
use common::*;
use gort::net::{PollFd, TcpListener, TcpStream};
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A short sleep: what the G a waiter waits for does before it acts.
fn nap() {
    gort::sleep(Duration::from_micros(50));
}

/// Runs `wait` in a G with a flag that a second G, queued behind it, sets after a nap; joins
/// both. `wait` returns once it has seen the flag set.
fn wait_for_napping_setter(wait: impl FnOnce(&AtomicBool) + Send + 'static) {
    let flag = Arc::new(AtomicBool::new(false));
    let f2 = flag.clone();
    let waiter = gort::go!(move || wait(&flag));
    let setter = gort::go!(move || {
        nap();
        f2.store(true, Ordering::Release);
    });
    waiter.join().unwrap();
    setter.join().unwrap();
}

/// Sends `v` on `tx`, retrying `send_timeout` with `timeout` until it goes; returns how
/// many times it timed out.
fn send_retrying(tx: &gort::chan::Sender<usize>, mut v: usize, timeout: Duration) -> usize {
    let mut misses = 0;
    loop {
        match tx.send_timeout(v, timeout) {
            Ok(()) => return misses,
            Err(gort::chan::SendTimeoutError::Timeout(x)) => {
                v = x;
                misses += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Readers with a short read timeout race a writer that sends in small bursts: every byte
/// sent is read exactly once, whatever the timeouts.
#[test]
fn read_deadline_races_data() {
    if is_child("read_deadline_races_data") {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        const PAIRS: usize = 64;
        const BYTES: usize = 3000;
        let got = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..PAIRS {
            let w = TcpStream::connect(addr).unwrap();
            let (r, _) = l.accept().unwrap();
            let got = got.clone();
            hs.push(gort::go!(move || {
                let mut r = r;
                r.set_read_timeout(Some(
                    [
                        Duration::from_nanos(1),
                        Duration::from_micros(1),
                        Duration::from_micros(20),
                        Duration::from_micros(80),
                        Duration::from_micros(200),
                    ][i % 5],
                ))
                .unwrap();
                let mut b = [0u8; 64];
                let mut n = 0usize;
                let mut expect = 0u8;
                while n < BYTES {
                    match r.read(&mut b) {
                        Ok(0) => panic!("eof after {n}"),
                        Ok(k) => {
                            for &x in &b[..k] {
                                assert_eq!(x, expect);
                                expect = expect.wrapping_add(1);
                            }
                            n += k;
                        }
                        Err(e) if e.kind() == ErrorKind::TimedOut => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                got.fetch_add(n, Ordering::Relaxed);
            }));
            hs.push(gort::go!(move || {
                let mut w = w;
                let mut x = 0u8;
                let mut sent = 0;
                let mut k = i;
                while sent < BYTES {
                    let burst = 1 + (k % 5);
                    k = k.wrapping_mul(31).wrapping_add(7);
                    let burst = burst.min(BYTES - sent);
                    let v: Vec<u8> = (0..burst)
                        .map(|_| {
                            let y = x;
                            x = x.wrapping_add(1);
                            y
                        })
                        .collect();
                    w.write_all(&v).unwrap();
                    sent += burst;
                    if k % 3 == 0 {
                        gort::sleep(Duration::from_micros(40 + (k % 200) as u64));
                    } else {
                        gort::yield_now();
                    }
                }
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(got.load(Ordering::Relaxed), PAIRS * BYTES);
        println!("child done");
        return;
    }
    run_procs("read_deadline_races_data", &[]);
}

/// Writers with a short write timeout against slow readers: what `write` says it wrote is
/// exactly what arrives, in order; a timed-out write wrote nothing.
#[test]
fn write_deadline_races_room() {
    if is_child("write_deadline_races_room") {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        const PAIRS: usize = 16;
        const BYTES: usize = 4 << 20;
        let mut hs = Vec::new();
        for i in 0..PAIRS {
            let w = TcpStream::connect(addr).unwrap();
            let (r, _) = l.accept().unwrap();
            hs.push(gort::go!(move || {
                let mut r = r;
                let mut b = vec![0u8; 8192];
                let mut n = 0usize;
                let mut k = 0u64;
                while n < BYTES {
                    let m = r.read(&mut b).unwrap();
                    assert!(m > 0, "eof after {n}");
                    for (j, &x) in b[..m].iter().enumerate() {
                        assert_eq!(x, ((n + j) % 251) as u8, "at {}", n + j);
                    }
                    n += m;
                    k += 1;
                    if k % 8 == 0 {
                        gort::sleep(Duration::from_micros(100 + (i as u64 * 37 + k) % 300));
                    }
                }
                let mut one = [0u8; 1];
                assert_eq!(r.read(&mut one).unwrap(), 0);
                n
            }));
            hs.push(gort::go!(move || {
                let mut w = w;
                w.set_write_timeout(Some(
                    [
                        Duration::from_nanos(1),
                        Duration::from_micros(1),
                        Duration::from_micros(30),
                        Duration::from_micros(100),
                        Duration::from_micros(300),
                    ][i % 5],
                ))
                .unwrap();
                let data: Vec<u8> = (0..BYTES + 70000).map(|j| (j % 251) as u8).collect();
                let mut off = 0usize;
                while off < BYTES {
                    let end = (off + 65536).min(BYTES);
                    match w.write(&data[off..end]) {
                        Ok(m) => {
                            assert!(m > 0);
                            off += m;
                        }
                        Err(e) if e.kind() == ErrorKind::TimedOut => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                off
            }));
        }
        for h in hs {
            assert_eq!(h.join().unwrap(), BYTES);
        }
        println!("child done");
        return;
    }
    run_procs("write_deadline_races_room", &[]);
}

/// A G that spins with `yield_now` waiting for a G in `sleep`: the timer still fires.
#[test]
fn yield_spin_waits_for_sleeper() {
    if is_child("yield_spin_waits_for_sleeper") {
        for _ in 0..50 {
            wait_for_napping_setter(|flag| {
                while !flag.load(Ordering::Acquire) {
                    gort::yield_now();
                }
            });
        }
        println!("child done");
        return;
    }
    run_procs("yield_spin_waits_for_sleeper", &[]);
}

/// Timed waits of a nanosecond, retried in a loop, for something a G queued behind the
/// waiter on the same P must do (after a sleep): each gives way, so every one completes.
#[test]
fn nanosecond_timed_waits_give_way() {
    if is_child("nanosecond_timed_waits_give_way") {
        const N: usize = 200;
        let ns = Duration::from_nanos(1);
        for cap in [0usize, 4] {
            // recv_timeout against a sender that naps between sends.
            let (tx, rx) = gort::chan::bounded::<usize>(cap);
            let s = gort::go!(move || for i in 0..N {
                nap();
                tx.send(i).unwrap();
            });
            let r = gort::go!(move || {
                let mut got = Vec::new();
                let mut misses = 0usize;
                while got.len() < N {
                    match rx.recv_timeout(ns) {
                        Ok(v) => got.push(v),
                        Err(_) => misses += 1,
                    }
                }
                assert_eq!(got, (0..N).collect::<Vec<_>>());
                misses
            });
            r.join().unwrap();
            s.join().unwrap();
            // send_timeout against a receiver that naps between receives.
            let (tx, rx) = gort::chan::bounded::<usize>(cap);
            let r = gort::go!(move || (0..N)
                .map(|_| {
                    nap();
                    rx.recv().unwrap()
                })
                .collect::<Vec<_>>());
            let s = gort::go!(move || (0..N).map(|i| send_retrying(&tx, i, ns)).sum::<usize>());
            s.join().unwrap();
            assert_eq!(r.join().unwrap(), (0..N).collect::<Vec<_>>());
        }
        // join_timeout on a G that naps.
        for _ in 0..50 {
            let mut h = gort::go!(move || {
                nap();
                7
            });
            let v = loop {
                match h.join_timeout(ns) {
                    Ok(r) => break r.unwrap(),
                    Err(back) => h = back,
                }
            };
            assert_eq!(v, 7);
        }
        // A semaphore's permit, held by a G that naps.
        let sem = Arc::new(gort::sync::Semaphore::new(1));
        for _ in 0..50 {
            let s2 = sem.clone();
            let held = gort::chan::bounded::<()>(0);
            let (htx, hrx) = held;
            let holder = gort::go!(move || {
                let _p = s2.acquire();
                htx.send(()).unwrap();
                nap();
            });
            hrx.recv().unwrap();
            let s3 = sem.clone();
            let w = gort::go!(move || loop {
                if let Some(p) = s3.acquire_timeout(ns) {
                    drop(p);
                    break;
                }
            });
            w.join().unwrap();
            holder.join().unwrap();
        }
        // A wait group whose last member naps.
        for _ in 0..50 {
            let wg = gort::sync::WaitGroup::new();
            wg.add(1);
            let wg2 = wg.clone();
            let m = gort::go!(move || {
                nap();
                wg2.done();
            });
            while !wg.wait_timeout(ns) {}
            m.join().unwrap();
        }
        // A condition variable's timed wait, for a flag that a napping G sets and notifies.
        for _ in 0..50 {
            let pair = Arc::new((gort::sync::Mutex::new(false), gort::sync::Condvar::new()));
            let p2 = pair.clone();
            let setter = gort::go!(move || {
                nap();
                *p2.0.lock() = true;
                p2.1.notify_all();
            });
            let waiter = gort::go!(move || {
                let (m, cv) = &*pair;
                let mut g = m.lock();
                loop {
                    let (g2, r) = cv.wait_timeout_while(g, ns, |set| !*set);
                    g = g2;
                    if !r.timed_out() {
                        break;
                    }
                }
                assert!(*g);
            });
            waiter.join().unwrap();
            setter.join().unwrap();
        }
        // Sleeps of zero and of a nanosecond, in a loop, for a flag that a napping G sets.
        for d in [Duration::ZERO, ns] {
            for _ in 0..50 {
                wait_for_napping_setter(move |flag| {
                    while !flag.load(Ordering::Acquire) {
                        gort::sleep(d);
                    }
                });
            }
        }
        println!("child done");
        return;
    }
    run_procs("nanosecond_timed_waits_give_way", &[]);
}

/// Senders retrying `send_timeout(ZERO)` against a receiver that polls with zero-timeout
/// selects and `recv_timeout(ZERO)`: every value arrives exactly once (the give-way of each
/// timed-out wait, with its waiter still queued, is where a value may change hands).
#[test]
fn zero_timeout_selects_lose_nothing() {
    if is_child("zero_timeout_selects_lose_nothing") {
        for cap in [0usize, 3] {
            const S: usize = 8;
            const M: usize = 1000;
            let (tx1, rx1) = gort::chan::bounded::<usize>(cap);
            let (tx2, rx2) = gort::chan::bounded::<usize>(cap);
            let mut hs = Vec::new();
            for s in 0..S {
                let tx = if s % 2 == 0 { tx1.clone() } else { tx2.clone() };
                hs.push(gort::go!(move || for i in 0..M {
                    send_retrying(&tx, s * M + i, Duration::ZERO);
                }));
            }
            drop((tx1, tx2));
            let r = gort::go!(move || {
                let mut seen = vec![false; S * M];
                let mut n = 0;
                let mut closed = (false, false);
                while !(closed.0 && closed.1) {
                    let (mut o1, mut o2) = (None, None);
                    let mut sel = gort::chan::Select::new();
                    if !closed.0 {
                        sel.recv(&rx1, &mut o1);
                    }
                    if !closed.1 {
                        sel.recv(&rx2, &mut o2);
                    }
                    let _ = sel.wait_timeout(Duration::ZERO);
                    for (o, c) in [(o1, &mut closed.0), (o2, &mut closed.1)] {
                        match o {
                            Some(Ok(v)) => {
                                assert!(!seen[v], "dup {v}");
                                seen[v] = true;
                                n += 1;
                            }
                            Some(Err(_)) => *c = true,
                            None => {}
                        }
                    }
                    if n % 7 == 0 && !closed.0 {
                        if let Ok(v) = rx1.recv_timeout(Duration::ZERO) {
                            assert!(!seen[v]);
                            seen[v] = true;
                            n += 1;
                        }
                    }
                }
                n
            });
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(r.join().unwrap(), S * M);
        }
        println!("child done");
        return;
    }
    run_procs("zero_timeout_selects_lose_nothing", &[]);
}

/// A pool's timed submit and timed release, retried with a nanosecond's timeout while the
/// pool's only worker naps: each gives way, so each submit eventually gets the worker and
/// every accepted task runs.
#[test]
fn pool_timed_submit_gives_way() {
    if is_child("pool_timed_submit_gives_way") {
        let pool = Arc::new(gort::pool::Pool::new(1).unwrap());
        let ran = Arc::new(AtomicUsize::new(0));
        let p1 = pool.clone();
        let r1 = ran.clone();
        let accepted = gort::go!(move || {
            let mut accepted = 0;
            while accepted < 50 {
                let ran = r1.clone();
                let task = move || {
                    gort::sleep(Duration::from_micros(50));
                    ran.fetch_add(1, Ordering::Relaxed);
                };
                match p1.submit_timeout(task, Duration::from_nanos(1)) {
                    Ok(()) => accepted += 1,
                    Err(gort::pool::PoolError::Timeout) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            accepted
        })
        .join()
        .unwrap();
        let p2 = pool.clone();
        gort::go!(move || while p2.release_timeout(Duration::from_nanos(1)).is_err() {})
            .join()
            .unwrap();
        assert_eq!(ran.load(Ordering::Relaxed), accepted);
        println!("child done");
        return;
    }
    run_procs("pool_timed_submit_gives_way", &[]);
}

/// xorshift64: the fuzz's draws.
fn rng(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Twelve senders and six receivers over three channels (capacities 0, 1, 16), every
/// operation a timed one with a timeout drawn from 0, 1 ns, 1 us, 10 us, 100 us (seeded, so
/// the same draws every run): `send_timeout`/`recv_timeout` and selects with a timeout,
/// retried until they complete. Every value is received exactly once, under 1, 2 and 4 P's.
#[test]
fn timed_ops_deliver_exactly_once() {
    if is_child("timed_ops_deliver_exactly_once") {
        const SENDERS: usize = 12;
        const PER: usize = 1500;
        const RECVS: usize = 6;
        let tos = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1),
            Duration::from_micros(10),
            Duration::from_micros(100),
        ];
        let chans: Vec<_> = [0usize, 1, 16]
            .iter()
            .map(|&c| gort::chan::bounded::<usize>(c))
            .collect();
        let txs: Vec<_> = chans.iter().map(|c| c.0.clone()).collect();
        let rxs: Vec<_> = chans.iter().map(|c| c.1.clone()).collect();
        drop(chans);
        let mut hs = Vec::new();
        for s in 0..SENDERS {
            let txs = txs.clone();
            hs.push(gort::go!(move || {
                let mut seed = 0x9e3779b97f4a7c15u64 ^ (s as u64 + 1);
                for i in 0..PER {
                    let mut v = s * PER + i;
                    loop {
                        let r = rng(&mut seed);
                        let to = tos[(r % 5) as usize];
                        let k = ((r >> 8) % 3) as usize;
                        if (r >> 16) % 4 == 0 {
                            let mut out = None;
                            let mut sel = gort::chan::Select::new();
                            sel.send(&txs[k], v, &mut out);
                            let _ = sel.wait_timeout(to);
                            match out {
                                Some(Ok(())) => break,
                                Some(Err(e)) => panic!("{e:?}"),
                                None => {}
                            }
                        } else {
                            match txs[k].send_timeout(v, to) {
                                Ok(()) => break,
                                Err(gort::chan::SendTimeoutError::Timeout(x)) => v = x,
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        if (r >> 20) % 8 == 0 {
                            gort::yield_now();
                        }
                    }
                }
            }));
        }
        drop(txs);
        let got = Arc::new(
            (0..SENDERS * PER)
                .map(|_| AtomicUsize::new(0))
                .collect::<Vec<_>>(),
        );
        let mut rh = Vec::new();
        for r in 0..RECVS {
            let rxs = rxs.clone();
            let got = got.clone();
            rh.push(gort::go!(move || {
                let mut seed = 0x1234567u64 ^ (r as u64 + 99);
                let mut open = [true; 3];
                while open.iter().any(|&o| o) {
                    let x = rng(&mut seed);
                    let to = tos[(x % 5) as usize];
                    if (x >> 8) % 2 == 0 {
                        let (mut o0, mut o1, mut o2) = (None, None, None);
                        let mut sel = gort::chan::Select::new();
                        if open[0] {
                            sel.recv(&rxs[0], &mut o0);
                        }
                        if open[1] {
                            sel.recv(&rxs[1], &mut o1);
                        }
                        if open[2] {
                            sel.recv(&rxs[2], &mut o2);
                        }
                        let _ = sel.wait_timeout(to);
                        for (k, o) in [o0, o1, o2].into_iter().enumerate() {
                            match o {
                                Some(Ok(v)) => {
                                    got[v].fetch_add(1, Ordering::Relaxed);
                                }
                                Some(Err(_)) => open[k] = false,
                                None => {}
                            }
                        }
                    } else {
                        let k = ((x >> 16) % 3) as usize;
                        if !open[k] {
                            continue;
                        }
                        match rxs[k].recv_timeout(to) {
                            Ok(v) => {
                                got[v].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(gort::chan::RecvTimeoutError::Closed) => open[k] = false,
                            Err(_) => {}
                        }
                    }
                }
            }));
        }
        drop(rxs);
        for h in hs {
            h.join().unwrap();
        }
        for h in rh {
            h.join().unwrap();
        }
        for (i, c) in got.iter().enumerate() {
            assert_eq!(c.load(Ordering::Relaxed), 1, "value {i}");
        }
        println!("child done");
        return;
    }
    run_procs("timed_ops_deliver_exactly_once", &[]);
}

/// Sixteen G's taking one or two of three permits with seeded timeouts from 0 to 100 us, and
/// the main thread waiting for them with nanosecond waits: never more than three held, and
/// all three free at the end.
#[test]
fn semaphore_timed_acquires_conserve_permits() {
    if is_child("semaphore_timed_acquires_conserve_permits") {
        let tos = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1),
            Duration::from_micros(10),
            Duration::from_micros(100),
        ];
        let sem = Arc::new(gort::sync::Semaphore::new(3));
        let held = Arc::new(AtomicUsize::new(0));
        let wg = gort::sync::WaitGroup::new();
        let mut hs = Vec::new();
        for g in 0..16u64 {
            let (sem, held, wg) = (sem.clone(), held.clone(), wg.clone());
            wg.add(1);
            hs.push(gort::go!(move || {
                let mut seed = 0xabcdef ^ (g + 1);
                let mut got = 0;
                for _ in 0..1500 {
                    let r = rng(&mut seed);
                    let n = 1 + (r % 2) as usize;
                    let to = tos[((r >> 4) % 5) as usize];
                    if let Some(p) = sem.acquire_many_timeout(n, to) {
                        let h = held.fetch_add(n, Ordering::SeqCst) + n;
                        assert!(h <= 3, "{h} held");
                        if (r >> 12) % 3 == 0 {
                            gort::yield_now();
                        }
                        held.fetch_sub(n, Ordering::SeqCst);
                        drop(p);
                        got += 1;
                    }
                }
                wg.done();
                got
            }));
        }
        // The main thread waits with tiny timeouts too.
        while !wg.wait_timeout(Duration::from_nanos(1)) {}
        let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(total > 0);
        assert!(sem.try_acquire_many(3).is_some());
        println!("child done");
        return;
    }
    run_procs("semaphore_timed_acquires_conserve_permits", &[]);
}

/// A `PollFd` reader waiting with `readable_timeout` of 1 ns to 30 us, draining to `EAGAIN`
/// after each readiness, against a writer of random-sized chunks: every byte once, in order.
#[test]
fn pollfd_readable_timeouts_race_data() {
    if is_child("pollfd_readable_timeouts_race_data") {
        let tos = [
            Duration::from_nanos(1),
            Duration::from_micros(1),
            Duration::from_micros(30),
        ];
        for round in 0..20 {
            let (r, w) = pipe();
            let r = PollFd::new(r).unwrap();
            let w = PollFd::new(w).unwrap();
            const TOTAL: usize = 20_000;
            let reader = gort::go!(move || {
                let mut got = 0usize;
                let mut expect = 0u8;
                let mut buf = [0u8; 97];
                let mut i = 0usize;
                while got < TOTAL {
                    i += 1;
                    match r.readable_timeout(tos[(i + round) % 3]) {
                        Ok(()) => loop {
                            match r.get_ref().read(&mut buf) {
                                Ok(0) if got == TOTAL => break,
                                Ok(0) => panic!("eof at {got}"),
                                Ok(n) => {
                                    for &b in &buf[..n] {
                                        assert_eq!(b, expect);
                                        expect = expect.wrapping_add(1);
                                    }
                                    got += n;
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(e) => panic!("{e}"),
                            }
                        },
                        Err(e) if e.kind() == ErrorKind::TimedOut => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            });
            let writer = gort::go!(move || {
                let mut x = 0u8;
                let mut sent = 0;
                let mut k = 1usize;
                while sent < TOTAL {
                    k = k.wrapping_mul(1103515245).wrapping_add(12345);
                    let n = (1 + (k >> 8) % 300).min(TOTAL - sent);
                    let v: Vec<u8> = (0..n)
                        .map(|_| {
                            let y = x;
                            x = x.wrapping_add(1);
                            y
                        })
                        .collect();
                    let mut off = 0;
                    while off < n {
                        off += w.write_with(|mut f| f.write(&v[off..])).unwrap();
                    }
                    sent += n;
                    if (k >> 20) % 4 == 0 {
                        gort::sleep(Duration::from_micros(20));
                    } else {
                        gort::yield_now();
                    }
                }
            });
            writer.join().unwrap();
            assert_eq!(reader.join().unwrap(), TOTAL);
        }
        println!("child done");
        return;
    }
    run_procs("pollfd_readable_timeouts_race_data", &[]);
}

/// `block_on` of a future that wakes itself and returns `Pending` until a flag is set (an
/// executor's yield, or a busy-polling future): the G goes through the scheduler between
/// polls, so the napping G that sets the flag runs, as the task would go to the back of an
/// executor's queue.
#[test]
fn block_on_self_waking_future_gives_way() {
    if is_child("block_on_self_waking_future_gives_way") {
        for _ in 0..50 {
            wait_for_napping_setter(|flag| {
                let mut polls = 0usize;
                gort::block_on(std::future::poll_fn(|cx| {
                    polls += 1;
                    if flag.load(Ordering::Acquire) {
                        std::task::Poll::Ready(())
                    } else {
                        cx.waker().wake_by_ref();
                        std::task::Poll::Pending
                    }
                }));
                assert!(polls >= 1);
            });
        }
        println!("child done");
        return;
    }
    run_procs("block_on_self_waking_future_gives_way", &[]);
}
