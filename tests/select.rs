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
        let t = gort::time::tick(Duration::from_millis(2));
        let start = Instant::now();
        for _ in 0..5 {
            t.recv().unwrap();
        }
        start.elapsed()
    });
    assert!(h.join().unwrap() >= Duration::from_millis(10));
}
