//! Channels: Go's semantics one test each, MPMC stress, and both worlds (G's and threads).
mod common;
use common::*;

use gort::chan::{self, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn unbuffered_is_a_rendezvous() {
    let (tx, rx) = chan::bounded::<u32>(0);
    assert_eq!(tx.capacity(), Some(0));
    // No receiver waiting: nothing can be sent without blocking, nothing is buffered.
    assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let h = gort::go!(move || {
        s.store(true, Ordering::SeqCst);
        tx.send(7).unwrap();
        tx
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    for _ in 0..1000 {
        std::thread::yield_now();
    }
    // The sender is still inside `send`: no receiver has taken the value.
    assert!(!h.is_finished());
    assert_eq!(rx.len(), 0);
    assert_eq!(rx.recv(), Ok(7));
    let tx = h.join().unwrap();
    // A receiver waiting: try_send hands the value over directly.
    let r = gort::go!(move || rx.recv());
    loop {
        match tx.try_send(9) {
            Ok(()) => break,
            Err(TrySendError::Full(_)) => gort::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(r.join().unwrap(), Ok(9));
}

#[test]
fn buffered_is_fifo() {
    let (tx, rx) = chan::bounded(100);
    for i in 0..100 {
        tx.send(i).unwrap();
    }
    assert_eq!(tx.try_send(100), Err(TrySendError::Full(100)));
    assert_eq!(rx.len(), 100);
    let got: Vec<i32> = (0..100).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // Senders blocked on a full buffer also go in order behind it.
    let (tx, rx) = chan::bounded(2);
    tx.send(0).unwrap();
    tx.send(1).unwrap();
    let h = gort::go!(move || {
        for i in 2..50 {
            tx.send(i).unwrap();
        }
    });
    let got: Vec<i32> = (0..50).map(|_| rx.recv().unwrap()).collect();
    h.join().unwrap();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn close_then_drain() {
    let (tx, rx) = chan::bounded(10);
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    tx.close();
    assert!(rx.is_closed());
    assert_eq!(rx.recv(), Ok(0));
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    // Dropping the last sender closes too; iteration ends there.
    let (tx, rx) = chan::unbounded();
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    tx2.send(2).unwrap();
    drop(tx);
    tx2.send(3).unwrap();
    drop(tx2);
    assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn send_on_closed_returns_the_value() {
    let (tx, rx) = chan::bounded::<String>(1);
    tx.close();
    assert_eq!(tx.send("a".into()), Err(SendError("a".to_string())));
    assert_eq!(
        tx.try_send("b".into()),
        Err(TrySendError::Closed("b".to_string()))
    );
    drop(rx);
    // No receivers at all: also refused.
    let (tx, rx) = chan::bounded::<u8>(0);
    drop(rx);
    assert_eq!(tx.send(1), Err(SendError(1)));
}

#[test]
fn close_wakes_blocked_senders_and_receivers() {
    let (tx, rx) = chan::bounded::<u32>(0);
    let rx2 = rx.clone();
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let rx = rx2.clone();
            gort::go!(move || rx.recv())
        })
        .collect();
    // A std thread and G's all blocked in recv, then the channel closes.
    let t = std::thread::spawn(move || rx2.recv());
    let tx2 = tx.clone();
    let closer = gort::go!(move || tx2.close());
    closer.join().unwrap();
    for h in receivers {
        assert_eq!(h.join().unwrap(), Err(RecvError));
    }
    assert_eq!(t.join().unwrap(), Err(RecvError));
    assert_eq!(rx.recv(), Err(RecvError));
    // Senders blocked on a full channel get their values back when receivers vanish.
    let (tx, rx) = chan::bounded::<u32>(0);
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let tx = tx.clone();
            gort::go!(move || tx.send(i))
        })
        .collect();
    drop(rx);
    let mut back: Vec<u32> = senders
        .into_iter()
        .map(|h| match h.join().unwrap() {
            Err(SendError(v)) => v,
            Ok(()) => panic!("sent with no receiver"),
        })
        .collect();
    back.sort();
    assert_eq!(back, vec![0, 1, 2, 3]);
}

#[test]
fn recv_on_empty_times_out() {
    let (tx, rx) = chan::bounded::<u8>(1);
    let t = std::time::Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(5));
    // In a G too, and the timed-out receiver does not swallow a later message.
    let rx2 = rx.clone();
    let h = gort::go!(move || rx2.recv_timeout(Duration::from_millis(5)));
    assert_eq!(h.join().unwrap(), Err(RecvTimeoutError::Timeout));
    tx.send(3).unwrap();
    assert_eq!(rx.recv(), Ok(3));
    // send_timeout on a full channel.
    tx.send(4).unwrap();
    let tx2 = tx.clone();
    let h = gort::go!(move || tx2.send_timeout(5, Duration::from_millis(5)));
    assert_eq!(
        h.join().unwrap(),
        Err(gort::chan::SendTimeoutError::Timeout(5))
    );
    assert_eq!(rx.try_recv(), Ok(4));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn len_and_capacity() {
    let (tx, rx) = chan::bounded(3);
    assert_eq!(
        (tx.len(), tx.capacity(), rx.capacity()),
        (0, Some(3), Some(3))
    );
    assert!(rx.is_empty());
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!((tx.len(), rx.len()), (2, 2));
    let (tx, rx) = chan::unbounded::<u8>();
    assert_eq!((tx.capacity(), rx.capacity()), (None, None));
    let (tx, _rx) = chan::bounded::<u8>(0);
    assert_eq!(tx.capacity(), Some(0));
    assert!(tx.is_empty());
}

#[test]
fn try_iter_does_not_block() {
    let (tx, rx) = chan::unbounded();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(rx.try_iter().count(), 0);
}

/// 8 producers x 8 consumers x 100,000 messages: each received exactly once.
fn mpmc(tx: chan::Sender<u64>, rx: chan::Receiver<u64>) {
    const P: u64 = 8;
    const N: u64 = 100_000;
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let tx = tx.clone();
            gort::go!(move || {
                for i in 0..N {
                    tx.send(p * N + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..8)
        .map(|_| {
            let rx = rx.clone();
            gort::go!(move || {
                let mut seen = Vec::new();
                for v in rx.iter() {
                    seen.push(v);
                }
                seen
            })
        })
        .collect();
    for h in producers {
        h.join().unwrap();
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len() as u64, P * N, "count");
    assert_eq!(all.iter().sum::<u64>(), (P * N) * (P * N - 1) / 2, "sum");
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, P * N, "duplicates");
    assert!(rx.try_recv().is_err(), "left behind");
}

#[test]
fn mpmc_stress() {
    if is_child("mpmc_stress") {
        mpmc_all();
        return;
    }
    for procs in ["1", "2"] {
        let o = run_child("mpmc_stress", &[("GORT_MAXPROCS", procs)]);
        assert_success(&o);
    }
}

fn mpmc_all() {
    let (tx, rx) = chan::bounded(16);
    mpmc(tx, rx);
    let (tx, rx) = chan::bounded(0);
    mpmc(tx, rx);
    let (tx, rx) = chan::unbounded();
    mpmc(tx, rx);
}

#[test]
fn mixed_worlds() {
    for kind in 0..3 {
        let mk = || match kind {
            0 => chan::bounded::<u64>(0),
            1 => chan::bounded::<u64>(4),
            _ => chan::unbounded::<u64>(),
        };
        // A std::thread sends to a G.
        let (tx, rx) = mk();
        let t = std::thread::spawn(move || {
            for i in 0..10_000 {
                tx.send(i).unwrap();
            }
        });
        let g = gort::go!(move || rx.iter().sum::<u64>());
        t.join().unwrap();
        assert_eq!(g.join().unwrap(), 10_000 * 9_999 / 2);
        // A G sends to the main thread.
        let (tx, rx) = mk();
        let g = gort::go!(move || {
            for i in 0..10_000 {
                tx.send(i).unwrap();
            }
        });
        assert_eq!(rx.iter().sum::<u64>(), 10_000 * 9_999 / 2);
        g.join().unwrap();
    }
}

#[test]
fn values_are_dropped_exactly_once() {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    struct Tracked(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let make = |l: &Arc<std::sync::atomic::AtomicUsize>| {
        l.fetch_add(1, Ordering::SeqCst);
        Tracked(l.clone())
    };
    {
        let (tx, rx) = chan::bounded(4);
        for _ in 0..3 {
            tx.send(make(&live)).unwrap();
        }
        drop(rx.recv().unwrap());
        // Two left in the buffer: dropped with the channel.
        drop(tx);
        drop(rx);
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

fn skynet(num: u64, size: u64, out: chan::Sender<u64>) {
    if size == 1 {
        out.send(num).unwrap();
        return;
    }
    let (tx, rx) = chan::bounded(0);
    let step = size / 10;
    for i in 0..10 {
        let tx = tx.clone();
        // Detached: nothing but the channel knows these G's while they are parked.
        drop(gort::go!(move || skynet(num + i * step, step, tx)));
    }
    drop(tx);
    out.send(rx.iter().sum()).unwrap();
}

#[test]
fn detached_trees_of_gs_over_rendezvous_channels() {
    // Regression: a parked G known only through a channel waiter (its JoinHandle dropped)
    // had its reference count drop to zero and come back, and could be recycled twice and
    // run on two M's at once. 10,000 small skynets, each result checked.
    for _ in 0..10_000 {
        let (tx, rx) = chan::bounded(0);
        drop(gort::go!(move || skynet(0, 1000, tx)));
        assert_eq!(rx.recv().unwrap(), 1000 * 999 / 2);
    }
}

/// Buffered channels run on a lock-free ring with wake-and-retry waiters: under 1, 2 and 4
/// P's, producers (send, send_timeout, select send) and consumers (recv, recv_timeout,
/// select recv over two channels) on rings of 1, 3 and 64 slots lose nothing, duplicate
/// nothing, and each consumer sees each producer's messages in the order sent.
#[test]
fn ring_channels_lose_nothing_and_keep_fifo() {
    if is_child("ring_channels_lose_nothing_and_keep_fifo") {
        for cap in [1, 3, 64] {
            ring_round(cap);
        }
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child(
            "ring_channels_lose_nothing_and_keep_fifo",
            &[("GORT_MAXPROCS", procs)],
        );
        assert_success(&o);
    }
}

fn ring_round(cap: usize) {
    const P: u64 = 6;
    const N: u64 = 20_000;
    // Producer p sends p * N + i on `a` (i even) or `b` (i odd), in order of i.
    let (a_tx, a_rx) = chan::bounded::<u64>(cap);
    let (b_tx, b_rx) = chan::bounded::<u64>(cap);
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let (a, b) = (a_tx.clone(), b_tx.clone());
            gort::go!(move || {
                for i in 0..N {
                    let v = p * N + i;
                    let tx = if i % 2 == 0 { &a } else { &b };
                    match (p + i) % 3 {
                        0 => tx.send(v).unwrap(),
                        1 => {
                            let mut v = v;
                            loop {
                                match tx.send_timeout(v, Duration::from_micros(50)) {
                                    Ok(()) => break,
                                    Err(chan::SendTimeoutError::Timeout(x)) => v = x,
                                    Err(e) => panic!("{e:?}"),
                                }
                            }
                        }
                        _ => gort::select! {
                            send(tx, v) -> r => r.unwrap(),
                        },
                    }
                }
            })
        })
        .collect();
    drop((a_tx, b_tx));
    // Consumer kinds: plain recv on a, recv_timeout on b, select over both (twice).
    let consumer = |kind: usize| {
        let (a, b) = (a_rx.clone(), b_rx.clone());
        gort::go!(move || {
            let mut got = Vec::new();
            match kind {
                0 => got.extend(a.iter()),
                1 => loop {
                    match b.recv_timeout(Duration::from_micros(30)) {
                        Ok(v) => got.push(v),
                        Err(chan::RecvTimeoutError::Timeout) => {}
                        Err(chan::RecvTimeoutError::Closed) => break,
                    }
                },
                _ => {
                    let (mut a_open, mut b_open) = (true, true);
                    while a_open || b_open {
                        let (ra, rb) = (
                            if a_open {
                                a.clone()
                            } else {
                                chan::bounded(0).1
                            },
                            if b_open {
                                b.clone()
                            } else {
                                chan::bounded(0).1
                            },
                        );
                        gort::select! {
                            recv(ra) -> m => match m { Ok(v) => got.push(v), Err(_) => a_open = false },
                            recv(rb) -> m => match m { Ok(v) => got.push(v), Err(_) => b_open = false },
                        }
                    }
                }
            }
            got
        })
    };
    let consumers: Vec<_> = (0..4).map(consumer).collect();
    for h in producers {
        h.join().unwrap();
    }
    let mut all = Vec::new();
    for h in consumers {
        let got = h.join().unwrap();
        // FIFO per producer per channel, as this consumer saw them.
        let mut last = vec![None::<u64>; 2 * P as usize];
        for &v in &got {
            let k = (2 * (v / N) + v % 2) as usize;
            assert!(
                last[k].map_or(true, |l| l < v),
                "out of order: {v} after {last:?}"
            );
            last[k] = Some(v);
        }
        all.extend(got);
    }
    assert_eq!(all.len() as u64, P * N, "count (cap {cap})");
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, P * N, "duplicates (cap {cap})");
    assert!(
        a_rx.try_recv().is_err() && b_rx.try_recv().is_err(),
        "left behind"
    );
}

/// Closing a full ring while G's and a thread block on both sides: the buffered messages
/// drain, every blocked send gets its value back, and nothing is lost or duplicated.
#[test]
fn ring_close_with_blocked_senders_and_receivers() {
    for _ in 0..50 {
        let (tx, rx) = chan::bounded::<u64>(2);
        // Fill it, then block 6 senders (5 G's and a thread) on the full ring.
        tx.send(100).unwrap();
        tx.send(101).unwrap();
        let (ready_tx, ready_rx) = chan::unbounded::<()>();
        let senders: Vec<_> = (0..5)
            .map(|i| {
                let (tx, ready) = (tx.clone(), ready_tx.clone());
                gort::go!(move || {
                    ready.send(()).unwrap();
                    tx.send(i)
                })
            })
            .collect();
        let t = {
            let (tx, ready) = (tx.clone(), ready_tx.clone());
            std::thread::spawn(move || {
                ready.send(()).unwrap();
                tx.send(5)
            })
        };
        for _ in 0..6 {
            ready_rx.recv().unwrap();
        }
        tx.close();
        let mut back: Vec<u64> = senders
            .into_iter()
            .map(|h| h.join().unwrap())
            .chain(std::iter::once(t.join().unwrap()))
            .filter_map(|r| r.err().map(|SendError(v)| v))
            .collect();
        let mut drained: Vec<u64> = rx.iter().collect();
        assert_eq!(
            drained.len() + back.len(),
            8,
            "drained {drained:?} back {back:?}"
        );
        drained.append(&mut back);
        drained.sort_unstable();
        assert_eq!(drained, vec![0, 1, 2, 3, 4, 5, 100, 101]);
        assert_eq!(rx.recv(), Err(RecvError));
    }
}

/// `len` and the values dropped with the channel stay right across many laps of the ring.
#[test]
fn ring_len_and_drop_across_laps() {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    struct Tracked(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    for cap in [1, 3, 5, 8] {
        let (tx, rx) = chan::bounded(cap);
        for round in 0..(3 * cap + 2) {
            let fill = round % (cap + 1);
            for _ in 0..fill {
                live.fetch_add(1, Ordering::SeqCst);
                tx.try_send(Tracked(live.clone())).ok().unwrap();
            }
            assert_eq!(rx.len(), fill);
            assert_eq!(tx.is_empty(), fill == 0);
            if fill == cap {
                live.fetch_add(1, Ordering::SeqCst);
                assert!(matches!(
                    tx.try_send(Tracked(live.clone())),
                    Err(TrySendError::Full(_))
                ));
            }
            for _ in 0..fill.saturating_sub(1) {
                drop(rx.try_recv().unwrap());
            }
            // One left over each round but the empty ones; take it unless last round.
            if round + 1 < 3 * cap + 2 && fill > 0 {
                drop(rx.try_recv().unwrap());
            }
        }
        // Whatever the last round left is dropped with the channel.
        drop((tx, rx));
        assert_eq!(live.load(Ordering::SeqCst), 0, "cap {cap}");
    }
}

/// Ping-pong over one-slot rings, where nearly every operation parks: a wake-up lost
/// between a waiter's queueing and a sender's push (or a receiver's pop) hangs a pair, and
/// the deadline turns that hang into a failure. G pairs and a thread-G pair, 1, 2 and 4 P's.
#[test]
fn ring_ping_pong_never_loses_a_wake_up() {
    if is_child("ring_ping_pong_never_loses_a_wake_up") {
        const ROUNDS: u64 = 50_000;
        let pair = || {
            let (a_tx, a_rx) = chan::bounded::<u64>(1);
            let (b_tx, b_rx) = chan::bounded::<u64>(1);
            let echo = move || {
                for v in a_rx.iter() {
                    b_tx.send(v + 1).unwrap();
                }
            };
            let drive = move || {
                let mut sum = 0;
                for i in 0..ROUNDS {
                    a_tx.send(i).unwrap();
                    sum += b_rx.recv().unwrap();
                }
                sum
            };
            (echo, drive)
        };
        let want = ROUNDS * (ROUNDS + 1) / 2;
        let mut hs = Vec::new();
        for _ in 0..4 {
            let (echo, drive) = pair();
            drop(gort::go!(echo));
            hs.push(gort::go!(drive));
        }
        let (echo, drive) = pair();
        let t = std::thread::spawn(echo);
        assert_eq!(gort::go!(drive).join().unwrap(), want);
        t.join().unwrap();
        for h in hs {
            assert_eq!(h.join().unwrap(), want);
        }
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child_with_deadline(
            "ring_ping_pong_never_loses_a_wake_up",
            &[("GORT_MAXPROCS", procs)],
            Duration::from_secs(60),
        );
        assert_success(&o);
    }
}

/// A buffer above the ring's limit (2^20 slots) keeps the buffer that grows as it fills:
/// `bounded(1 << 40)` as "practically unbounded" allocates nothing up front and works.
#[test]
fn huge_bounded_capacity_keeps_a_growing_buffer() {
    let (tx, rx) = chan::bounded::<u64>(1 << 40);
    assert_eq!(tx.capacity(), Some(1 << 40));
    for i in 0..10_000 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.len(), 10_000);
    drop(tx);
    assert_eq!(rx.iter().sum::<u64>(), 10_000 * 9_999 / 2);
    // Just above and at the limit: the two flavours behave alike.
    for cap in [1 << 20, (1 << 20) + 1] {
        let (tx, rx) = chan::bounded::<u32>(cap);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(
            (rx.recv(), rx.recv(), rx.try_recv()),
            (Ok(1), Ok(2), Err(TryRecvError::Empty))
        );
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError));
    }
}

/// crossbeam-channel's API where gort lacked it: `is_full`, `same_channel`, unwind safety,
/// `after(0)` ready at once, `select_biased!`.
#[test]
fn crossbeam_compat_odds_and_ends() {
    use gort::{select, select_biased, time};
    let (tx, rx) = chan::bounded::<u32>(2);
    assert!(!tx.is_full() && !rx.is_full());
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert!(tx.is_full() && rx.is_full());
    let (tx0, rx0) = chan::bounded::<u32>(0);
    assert!(tx0.is_full() && rx0.is_full());
    let (txu, rxu) = chan::unbounded::<u32>();
    assert!(!txu.is_full() && !rxu.is_full());
    assert!(tx.same_channel(&tx.clone()) && rx.same_channel(&rx.clone()));
    assert!(!tx.same_channel(&tx0) && !rxu.same_channel(&rx0));

    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>(_: &T) {}
    unwind_safe(&tx);
    unwind_safe(&rx);

    // after(0) is ready at once; two such arms split about evenly (Go's random choice).
    assert!(time::after(std::time::Duration::ZERO).try_recv().is_ok());
    let (mut a, mut b) = (0, 0);
    for _ in 0..1_000 {
        select! {
            recv(time::after(std::time::Duration::ZERO)) -> _ => a += 1,
            recv(time::after(std::time::Duration::ZERO)) -> _ => b += 1,
        }
    }
    assert!(a > 300 && b > 300, "{a} / {b}");

    // select_biased!: of ready arms, the first written wins, every time.
    for _ in 0..100 {
        let v = select_biased! {
            recv(rx) -> m => m.unwrap(),
            recv(time::after(std::time::Duration::ZERO)) -> _ => 0,
        };
        assert_ne!(v, 0);
        if rx.is_empty() {
            tx.send(3).unwrap();
        }
    }
}

/// A channel dropped with buffered values whose `Drop` panics: every value is dropped, one
/// panic comes out of the last handle's drop, and the process does not abort (ring,
/// growable buffer).
#[test]
fn panicking_buffered_values_are_all_dropped() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            std::panic::panic_any("bomb-quiet");
        }
    }
    std::panic::set_hook(Box::new(|_| {}));
    for cap in [Some(4), None, Some(2 << 20)] {
        DROPS.store(0, Ordering::SeqCst);
        let (tx, rx) = match cap {
            Some(c) => chan::bounded::<Bomb>(c),
            None => chan::unbounded::<Bomb>(),
        };
        for _ in 0..3 {
            tx.send(Bomb).unwrap();
        }
        drop(tx);
        let r = catch_unwind(AssertUnwindSafe(move || drop(rx)));
        assert!(r.is_err(), "one panic comes out");
        assert_eq!(
            DROPS.load(Ordering::SeqCst),
            3,
            "every value dropped, cap {cap:?}"
        );
    }
    let _ = std::panic::take_hook();
}

/// `never()` as crossbeam defines it: empty, full, capacity 0, never ready, never closed,
/// every one the same channel; and as a way to switch a `tick` arm off.
#[test]
fn never_behaves_as_crossbeams() {
    use gort::{select, time};
    let r = chan::never::<u32>();
    assert_eq!(
        (r.len(), r.is_empty(), r.is_full(), r.capacity()),
        (0, true, true, Some(0))
    );
    assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        r.recv_timeout(Duration::from_millis(3)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(r.same_channel(&r.clone()));
    assert!(r.same_channel(&chan::never()));
    let (_tx, other) = chan::bounded::<u32>(0);
    assert!(!r.same_channel(&other));
    // A ticker switched off after 5 ticks: the loop then ends on its timeout arm.
    let mut ticks = time::tick(Duration::from_millis(1));
    let mut n = 0;
    loop {
        select! {
            recv(ticks) -> _ => n += 1,
            // A stall of the machine is no reason to stop before the switch.
            default(Duration::from_millis(50)) => if n >= 5 { break },
        }
        if n == 5 {
            ticks = chan::never();
        }
    }
    assert_eq!(n, 5);
}

/// `time::after` as crossbeam's: a one-slot channel (empty, then full once fired, then
/// empty again for good); the same receiver in several arms, and two ready timers, are
/// chosen about evenly.
#[test]
fn after_behaves_as_crossbeams() {
    use gort::{select, time};
    let r = time::after(Duration::from_millis(2));
    assert_eq!((r.capacity(), r.len(), r.is_full()), (Some(1), 0, false));
    let fired = r.recv().unwrap();
    assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
    assert!(fired.elapsed() < Duration::from_secs(60));
    let r = time::after(Duration::ZERO);
    assert_eq!((r.len(), r.is_full()), (1, true));
    for dur in [0u64, 1] {
        let mut hits = [0usize; 5];
        for _ in 0..1_000 {
            let r = time::after(Duration::from_millis(dur));
            select! {
                recv(r) -> _ => hits[0] += 1,
                recv(r) -> _ => hits[1] += 1,
                recv(r) -> _ => hits[2] += 1,
                recv(r) -> _ => hits[3] += 1,
                recv(r) -> _ => hits[4] += 1,
            }
        }
        assert!(hits.iter().all(|h| *h >= 100), "{dur} ms: {hits:?}");
        let mut two = [0usize; 2];
        for _ in 0..1_000 {
            select! {
                recv(time::after(Duration::from_millis(dur))) -> _ => two[0] += 1,
                recv(time::after(Duration::from_millis(dur))) -> _ => two[1] += 1,
            }
        }
        if dur == 0 {
            assert!(two.iter().all(|h| *h >= 250), "{dur} ms: {two:?}");
        } else {
            // Two timers a few hundred nanoseconds apart: the earlier fires first and wins
            // (Go's behaviour; crossbeam picks among those due when the select looks, see
            // CAVEATS). Every select completes.
            assert_eq!(two[0] + two[1], 1_000);
        }
    }
}
