//! Channels: Go's semantics one test each, MPMC stress, and both worlds (G's and threads).
mod common;
use common::*;

use gort::chan::{self, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicBool, Ordering};
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
