//! select!: fairness, default and timeout arms, closing while waiting, send arms, stress.

use gort::chan::{self, RecvError, SendError};
use gort::select;
use std::time::{Duration, Instant};

#[test]
fn fair_between_ready_arms() {
    let (tx1, rx1) = chan::unbounded::<u32>();
    let (tx2, rx2) = chan::unbounded::<u32>();
    for _ in 0..10_000 {
        tx1.send(1).unwrap();
        tx2.send(2).unwrap();
    }
    let (mut a, mut b) = (0, 0);
    for _ in 0..10_000 {
        select! {
            recv(rx1) -> m => { assert_eq!(m, Ok(1)); a += 1; }
            recv(rx2) -> m => { assert_eq!(m, Ok(2)); b += 1; }
        }
    }
    assert_eq!(a + b, 10_000);
    assert!(
        (4_000..=6_000).contains(&a),
        "arm 1 chosen {a} times of 10,000"
    );
}

#[test]
fn default_arm_when_nothing_is_ready() {
    let (tx, rx) = chan::bounded::<u32>(1);
    let got = select! {
        recv(rx) -> _ => "recv",
        default => "default",
    };
    assert_eq!(got, "default");
    tx.send(5).unwrap();
    let got = select! {
        recv(rx) -> m => { assert_eq!(m, Ok(5)); "recv" }
        default => "default",
    };
    assert_eq!(got, "recv");
    // A full channel: the send arm is not ready, default runs and the value is dropped.
    tx.send(6).unwrap();
    let got = select! {
        send(tx, 7) -> _ => "send",
        default => "default",
    };
    assert_eq!(got, "default");
    assert_eq!(rx.try_recv(), Ok(6));
}

#[test]
fn timeout_arm() {
    let (_tx, rx) = chan::bounded::<u32>(0);
    let t = Instant::now();
    let timed_out = select! {
        recv(rx) -> _ => false,
        default(Duration::from_millis(10)) => true,
    };
    assert!(timed_out);
    assert!(t.elapsed() >= Duration::from_millis(10));
    // In a G, with time::after as the timeout.
    let h = gort::go!(move || {
        select! {
            recv(rx) -> _ => false,
            recv(gort::time::after(Duration::from_millis(5))) -> t => t.is_ok(),
        }
    });
    assert!(h.join().unwrap());
}

#[test]
fn channels_closing_while_waiting() {
    let (tx1, rx1) = chan::bounded::<u32>(0);
    let (tx2, rx2) = chan::bounded::<u32>(0);
    let h = gort::go!(move || {
        select! {
            recv(rx1) -> m => (1, m),
            recv(rx2) -> m => (2, m),
        }
    });
    // Close one while the select is parked on both: that arm becomes ready with RecvError.
    let closer = gort::go!(move || {
        drop(tx2);
        tx1
    });
    let _tx1 = closer.join().unwrap();
    assert_eq!(h.join().unwrap(), (2, Err(RecvError)));
}

#[test]
fn send_arms_rendezvous_with_receivers() {
    let (tx, rx) = chan::bounded::<u32>(0);
    let (_qtx, qrx) = chan::bounded::<u32>(0);
    let h = gort::go!(move || {
        let mut sent = 0;
        for i in 0..1000 {
            select! {
                send(tx, i) -> r => { r.unwrap(); sent += 1; }
                recv(qrx) -> _ => unreachable!(),
            }
        }
        sent
    });
    let got: Vec<u32> = (0..1000).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(h.join().unwrap(), 1000);
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    // A send arm on a closed channel is ready, with the value back.
    let (tx, rx) = chan::bounded::<u32>(0);
    drop(rx);
    let r = select! { send(tx, 9) -> r => r };
    assert_eq!(r, Err(SendError(9)));
}

#[test]
fn select_stress_exactly_once() {
    // 4 producers select-send onto two channels; 4 consumers select-recv from both.
    // Every message arrives exactly once.
    const N: u64 = 20_000;
    let (a_tx, a_rx) = chan::bounded::<u64>(0);
    let (b_tx, b_rx) = chan::bounded::<u64>(3);
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let (a, b) = (a_tx.clone(), b_tx.clone());
            gort::go!(move || {
                for i in 0..N {
                    let v = p * N + i;
                    select! {
                        send(a, v) -> r => r.unwrap(),
                        send(b, v) -> r => r.unwrap(),
                    }
                }
            })
        })
        .collect();
    drop((a_tx, b_tx));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (a, b) = (a_rx.clone(), b_rx.clone());
            gort::go!(move || {
                let mut got = Vec::new();
                let (mut a_open, mut b_open) = (true, true);
                while a_open || b_open {
                    select! {
                        recv(a) -> m => match m { Ok(v) => got.push(v), Err(_) => a_open = false },
                        recv(b) -> m => match m { Ok(v) => got.push(v), Err(_) => b_open = false },
                    }
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len() as u64, 4 * N);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, 4 * N);
}

#[test]
fn tick_delivers_repeatedly() {
    let h = gort::go!(|| {
        // The clock first: the ticks count from the ticker's creation.
        let start = Instant::now();
        let t = gort::time::tick(Duration::from_millis(2));
        for _ in 0..5 {
            t.recv().unwrap();
        }
        start.elapsed()
    });
    assert!(h.join().unwrap() >= Duration::from_millis(10));
}

#[test]
fn random_selects_with_timeouts_conserve_messages() {
    // Many G's and a few threads send and receive on shared channels through selects with
    // short timeouts, try_ and blocking calls. Every message that a send reported as sent is
    // received exactly once, or is still in a buffer at the end.
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let chans: Arc<Vec<(chan::Sender<u64>, chan::Receiver<u64>)>> = Arc::new(vec![
        chan::bounded(0),
        chan::bounded(1),
        chan::bounded(8),
        chan::unbounded(),
    ]);
    let sent_sum = Arc::new(AtomicU64::new(0));
    let sent_n = Arc::new(AtomicU64::new(0));
    let recv_sum = Arc::new(AtomicU64::new(0));
    let recv_n = Arc::new(AtomicU64::new(0));
    let worker = |id: u64| {
        let (chans, ss, sn, rs, rn) = (
            chans.clone(),
            sent_sum.clone(),
            sent_n.clone(),
            recv_sum.clone(),
            recv_n.clone(),
        );
        move || {
            let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for k in 0..3_000u64 {
                let v = id * 1_000_000 + k + 1;
                let a = (next() % 4) as usize;
                let b = (next() % 4) as usize;
                let (ta, ra) = &chans[a];
                let (_tb, rb) = &chans[b];
                let got = |m: Result<u64, chan::RecvError>| {
                    if let Ok(m) = m {
                        rs.fetch_add(m, Ordering::SeqCst);
                        rn.fetch_add(1, Ordering::SeqCst);
                    }
                };
                match next() % 4 {
                    0 => select! {
                        send(ta, v) -> r => if r.is_ok() { ss.fetch_add(v, Ordering::SeqCst); sn.fetch_add(1, Ordering::SeqCst); },
                        recv(rb) -> m => got(m),
                        default(Duration::from_micros(next() % 200)) => {}
                    },
                    1 => select! {
                        recv(ra) -> m => got(m),
                        recv(rb) -> m => got(m),
                        default => {}
                    },
                    2 => {
                        if ta
                            .send_timeout(v, Duration::from_micros(next() % 100))
                            .is_ok()
                        {
                            ss.fetch_add(v, Ordering::SeqCst);
                            sn.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    _ => got(ra
                        .recv_timeout(Duration::from_micros(next() % 100))
                        .map_err(|_| chan::RecvError)),
                }
            }
        }
    };
    let gs: Vec<_> = (0..32).map(|i| gort::go!(worker(i))).collect();
    let ts: Vec<_> = (32..34).map(|i| std::thread::spawn(worker(i))).collect();
    for g in gs {
        g.join().unwrap();
    }
    for t in ts {
        t.join().unwrap();
    }
    // Drain what is left in the buffers.
    for (_, rx) in chans.iter() {
        while let Ok(m) = rx.try_recv() {
            recv_sum.fetch_add(m, Ordering::SeqCst);
            recv_n.fetch_add(1, Ordering::SeqCst);
        }
    }
    assert_eq!(sent_n.load(Ordering::SeqCst), recv_n.load(Ordering::SeqCst));
    assert_eq!(
        sent_sum.load(Ordering::SeqCst),
        recv_sum.load(Ordering::SeqCst)
    );
    assert!(
        sent_n.load(Ordering::SeqCst) > 1000,
        "too little traffic to mean anything"
    );
}

/// Every arm form crossbeam-channel accepts compiles and picks the right arm: block or
/// expression bodies, with or without a trailing comma (the last arm too), for `recv`,
/// `send`, `default`, `default()` and `default(timeout)`; trailing commas inside operands;
/// temporaries inside operands.
#[test]
fn every_arm_form_compiles() {
    let (tx, rx) = chan::bounded::<u32>(4);
    let (_keep, idle) = chan::bounded::<u32>(1);
    let never = chan::never::<u32>();

    // recv: block with comma, block without, expression with comma, expression last.
    tx.send(1).unwrap();
    let got;
    select! {
        recv(rx) -> m => { got = m.unwrap(); },
        recv(idle) -> _ => { unreachable!() }
        recv(never) -> _ => unreachable!(),
    }
    assert_eq!(got, 1);
    tx.send(2).unwrap();
    let v = select! {
        recv(idle) -> _ => 0,
        recv(rx) -> m => m.unwrap()
    };
    assert_eq!(v, 2);
    tx.send(3).unwrap();
    let v = select! {
        recv(idle) -> _ => { 0 }
        recv(rx) -> m => { m.unwrap() }
    };
    assert_eq!(v, 3);
    tx.send(4).unwrap();
    let v = select! {
        recv(rx) -> m => { m.unwrap() },
    };
    assert_eq!(v, 4);

    // send: the same forms, and a trailing comma inside the operands.
    let v = select! {
        send(tx, 5) -> r => { r.unwrap(); 5 },
        recv(idle) -> _ => 0,
    };
    assert_eq!(v, 5);
    let v = select! {
        recv(idle) -> _ => 0,
        send(tx, 6,) -> r => r.map(|_| 6).unwrap()
    };
    assert_eq!(v, 6);
    select! {
        send(tx, 7) -> r => { r.unwrap() }
    }
    assert_eq!((rx.recv(), rx.recv(), rx.recv()), (Ok(5), Ok(6), Ok(7)));

    // default: every form, first, middle or last.
    let v = select! { default => 1 };
    assert_eq!(v, 1);
    let v = select! { default => { 2 } };
    assert_eq!(v, 2);
    let v = select! { default() => 3, };
    assert_eq!(v, 3);
    let v = select! {
        default => { 4 },
        recv(idle) -> _ => 0,
    };
    assert_eq!(v, 4);
    let v = select! {
        recv(idle) -> _ => 0,
        default(Duration::from_millis(1),) => 5,
        recv(never) -> _ => 0,
    };
    assert_eq!(v, 5);
    let v = select! {
        recv(idle,) -> _ => 0,
        default(Duration::from_millis(1)) => { 6 }
    };
    assert_eq!(v, 6);

    // A temporary inside an operand lives through the select (crossbeam's E0716 case).
    let maybe: Option<chan::Receiver<u32>> = None;
    tx.send(8).unwrap();
    let v = select! {
        recv(maybe.as_ref().unwrap_or(&chan::never())) -> _ => 0,
        recv(rx) -> m => m.unwrap(),
    };
    assert_eq!(v, 8);
}

/// `never()` switches an arm off: a merge loop over two channels that close at different
/// times ends without spinning on the closed one.
#[test]
fn never_switches_a_closed_arm_off() {
    let (tx1, rx1) = chan::bounded::<u32>(0);
    let (tx2, rx2) = chan::bounded::<u32>(0);
    let a = gort::go!(move || {
        for i in 0..100 {
            tx1.send(i).unwrap();
        }
    });
    let b = gort::go!(move || {
        for i in 0..1_000 {
            tx2.send(i).unwrap();
        }
    });
    let (mut r1, mut r2) = (Some(rx1), Some(rx2));
    let off = chan::never();
    let (mut n, mut closed_seen) = (0, 0);
    while r1.is_some() || r2.is_some() {
        select! {
            recv(r1.as_ref().unwrap_or(&off)) -> m => match m {
                Ok(_) => n += 1,
                Err(_) => { closed_seen += 1; r1 = None; }
            },
            recv(r2.as_ref().unwrap_or(&off)) -> m => match m {
                Ok(_) => n += 1,
                Err(_) => { closed_seen += 1; r2 = None; }
            },
        }
    }
    // Each closed arm was seen once: switched off afterwards, not spun on.
    assert_eq!((n, closed_seen), (1_100, 2));
    a.join().unwrap();
    b.join().unwrap();
    // A never() receiver is never ready, and never closed.
    assert!(off.try_recv().is_err());
    assert!(off.recv_timeout(Duration::from_millis(5)).is_err());
}

/// A select on rendezvous channels against a select on the other side (both sides
/// selecting, as crossbeam and Go allow): every round matches exactly one pair, and both
/// sides spread their choices; the same channel in several arms on both sides too.
#[test]
fn select_against_select_on_rendezvous_channels() {
    const N: usize = 10_000;
    let (s1, r1) = chan::bounded::<u8>(0);
    let (s2, r2) = chan::bounded::<u8>(0);
    let receiver = gort::go!(move || {
        let mut hits = [0usize; 2];
        for _ in 0..N {
            select! {
                recv(r1) -> m => { assert_eq!(m, Ok(1)); hits[0] += 1; }
                recv(r2) -> m => { assert_eq!(m, Ok(2)); hits[1] += 1; }
            }
        }
        hits
    });
    let mut sent = [0usize; 2];
    for _ in 0..N {
        select! {
            send(s1, 1) -> r => { r.unwrap(); sent[0] += 1; }
            send(s2, 2) -> r => { r.unwrap(); sent[1] += 1; }
        }
    }
    let got = receiver.join().unwrap();
    assert_eq!(got, sent, "each send matched by its receive");
    assert!(got.iter().all(|h| *h >= N / 4), "{got:?}");

    let (s, r) = chan::bounded::<u8>(0);
    let receiver = gort::go!(move || {
        let mut hits = [0usize; 3];
        for _ in 0..N {
            select! {
                recv(r) -> _ => hits[0] += 1,
                recv(r) -> _ => hits[1] += 1,
                recv(r) -> _ => hits[2] += 1,
            }
        }
        hits
    });
    let mut sent = [0usize; 3];
    for _ in 0..N {
        select! {
            send(s, 0) -> _ => sent[0] += 1,
            send(s, 0) -> _ => sent[1] += 1,
            send(s, 0) -> _ => sent[2] += 1,
        }
    }
    let got = receiver.join().unwrap();
    assert_eq!(got.iter().sum::<usize>(), N);
    assert!(
        got.iter().chain(sent.iter()).all(|h| *h >= N / 6),
        "{got:?} {sent:?}"
    );
}
