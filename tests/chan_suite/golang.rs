//! Go's classic channel programs (from Go's own test/chan directory, rewritten): a prime
//! sieve, FIFO chains, a daisy chain, double select, non-blocking operations, select on
//! closed and nil channels, and zero-size messages.

use super::*;
use gort::chan::{self, Receiver, RecvError, Sender, TryRecvError, TrySendError};
use gort::select;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Sends 2, 3, 4, ... until the receiver goes.
fn generate(tx: Sender<u32>) {
    let mut i = 2;
    while tx.send(i).is_ok() {
        i += 1;
    }
}

/// Copies values from `rx` to `tx`, removing those divisible by `prime`.
fn filter(rx: Receiver<u32>, tx: Sender<u32>, prime: u32) {
    for i in rx.iter() {
        if i % prime != 0 && tx.send(i).is_err() {
            return;
        }
    }
}

suite! {
    fn prime_sieve() {
        const FIRST: [u32; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
        scope(|s| {
            let (tx, mut rx) = chan::bounded::<u32>(0);
            s.spawn(move || generate(tx));
            for &expect in &FIRST {
                let prime = rx.recv().unwrap();
                assert_eq!(prime, expect);
                let (tx2, rx2) = chan::bounded(0);
                let from = std::mem::replace(&mut rx, rx2);
                s.spawn(move || filter(from, tx2, prime));
            }
            // Dropping the last receiver unwinds the whole chain: each filter's send fails.
            drop(rx);
        });
    }

    fn fifo_through_one_buffered_channel() {
        const N: u32 = 10;
        let (tx, rx) = chan::bounded::<u32>(N as usize);
        for i in 0..N {
            tx.send(i).unwrap();
        }
        for i in 0..N {
            assert_eq!(rx.recv(), Ok(i));
        }
    }

    fn fifo_through_a_chain_of_threads() {
        // Each link waits for its predecessor before sending its number: the receiver sees
        // them in order.
        const N: usize = 200;
        let (tx, rx) = chan::bounded::<usize>(0);
        scope(|s| {
            let (mut prev_tx, mut prev_rx) = chan::bounded::<()>(0);
            let first = prev_tx.clone();
            for i in 0..N {
                let (next_tx, next_rx) = chan::bounded::<()>(0);
                let (wait, out, go_on) = (prev_rx, tx.clone(), next_tx.clone());
                s.spawn(move || {
                    wait.recv().unwrap();
                    out.send(i).unwrap();
                    go_on.send(()).unwrap();
                });
                prev_tx = next_tx;
                prev_rx = next_rx;
            }
            drop(tx);
            first.send(()).unwrap();
            for i in 0..N {
                assert_eq!(rx.recv(), Ok(i));
            }
            prev_rx.recv().unwrap();
            drop(prev_tx);
        });
    }

    fn daisy_chain() {
        // Go's "whispers": 2,000 links, each adds one.
        const N: usize = 2_000;
        let (first_tx, mut rx) = chan::bounded::<usize>(0);
        scope(|s| {
            for _ in 0..N {
                let (tx, next) = chan::bounded::<usize>(0);
                let from = std::mem::replace(&mut rx, next);
                s.spawn(move || tx.send(from.recv().unwrap() + 1).unwrap());
            }
            first_tx.send(1).unwrap();
            assert_eq!(rx.recv(), Ok(N + 1));
        });
    }

    fn double_select() {
        // A sender selects among three channels; three receivers and a mux forward to one
        // channel; every value arrives exactly once.
        const N: usize = 3_000;
        let (c1, r1) = chan::bounded::<usize>(0);
        let (c2, r2) = chan::bounded::<usize>(0);
        let (c3, r3) = chan::bounded::<usize>(0);
        let (mux_tx, mux_rx) = chan::bounded::<usize>(0);
        let mut seen = vec![false; N];
        scope(|s| {
            s.spawn(move || {
                for i in 0..N {
                    select! {
                        send(c1, i) -> r => r.unwrap(),
                        send(c2, i) -> r => r.unwrap(),
                        send(c3, i) -> r => r.unwrap(),
                    }
                }
            });
            for r in [r1, r2, r3] {
                let mux_tx = mux_tx.clone();
                s.spawn(move || {
                    for v in r.iter() {
                        mux_tx.send(v).unwrap();
                    }
                });
            }
            drop(mux_tx);
            for v in mux_rx.iter() {
                assert!(!seen[v], "{v} received twice");
                seen[v] = true;
            }
        });
        assert!(seen.iter().all(|&b| b));
    }

    fn non_blocking_operations() {
        for cap in [0usize, 1, 10] {
            let (tx, rx) = chan::bounded::<u32>(cap);
            // Nothing to receive, without blocking.
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            select! {
                recv(rx) -> _ => panic!("empty"),
                default => {}
            }
            // Sends succeed only while there is room.
            for i in 0..cap as u32 {
                assert_eq!(tx.try_send(i), Ok(()));
            }
            assert_eq!(tx.try_send(7), Err(TrySendError::Full(7)));
            // With a receiver waiting, even the rendezvous channel takes a value.
            scope(|s| {
                let h = s.spawn(|| {
                    let mut v = Vec::new();
                    for _ in 0..=cap {
                        v.push(rx.recv().unwrap());
                    }
                    v
                });
                let mut sent = false;
                while !sent {
                    select! {
                        send(tx, 100) -> r => { r.unwrap(); sent = true; }
                        default => gort::yield_now(),
                    }
                }
                let mut expect: Vec<u32> = (0..cap as u32).collect();
                expect.push(100);
                assert_eq!(h.join().unwrap(), expect);
            });
        }
    }

    fn select_on_a_closed_channel() {
        // A closed channel's receive arm is always ready: a loop sees its error every time.
        let (tx, rx) = chan::bounded::<u32>(1);
        drop(tx);
        for _ in 0..10 {
            select! {
                recv(rx) -> m => assert_eq!(m, Err(RecvError)),
                default => panic!("a closed channel is ready"),
            }
        }
        // A buffered value comes first, then the error.
        let (tx, rx) = chan::bounded::<u32>(1);
        tx.send(4).unwrap();
        tx.close();
        assert_eq!(rx.recv(), Ok(4));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.len(), 0);
        assert_eq!(rx.capacity(), Some(1));
    }

    fn a_nil_channel_blocks_forever() {
        let r = select! {
            recv(chan::never::<u32>()) -> _ => 1,
            default(ms(2)) => 2,
        };
        assert_eq!(r, 2);
    }

    fn select_picks_every_ready_case() {
        // Go's test/chan/select.go: over many selects with all four cases ready, each case
        // is chosen at some point.
        let chans: Vec<_> = (0..4).map(|_| chan::bounded::<u32>(1)).collect();
        let mut counts = [0u32; 4];
        for _ in 0..1_000 {
            for (tx, _) in &chans {
                let _ = tx.try_send(1);
            }
            select! {
                recv(chans[0].1) -> _ => counts[0] += 1,
                recv(chans[1].1) -> _ => counts[1] += 1,
                recv(chans[2].1) -> _ => counts[2] += 1,
                recv(chans[3].1) -> _ => counts[3] += 1,
            }
        }
        assert_eq!(counts.iter().sum::<u32>(), 1_000);
        assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    }

    fn zero_size_messages() {
        let (tx, rx) = chan::bounded::<()>(3);
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        assert_eq!(rx.len(), 2);
        let (tx2, rx2) = chan::unbounded::<()>();
        for _ in 0..100_000 {
            tx2.send(()).unwrap();
        }
        assert_eq!(rx2.len(), 100_000);
        assert_eq!(rx2.try_iter().count(), 100_000);
        drop((tx, rx));
    }

    fn many_goroutines_sum() {
        // 1,000 senders, one receiver, exact sum.
        const N: usize = 1_000;
        let (tx, rx) = chan::bounded::<usize>(0);
        let started = AtomicUsize::new(0);
        let sum = scope(|s| {
            for i in 0..N {
                let tx = tx.clone();
                let started = &started;
                s.spawn(move || {
                    started.fetch_add(1, Ordering::Relaxed);
                    tx.send(i).unwrap();
                });
            }
            drop(tx);
            rx.iter().sum::<usize>()
        });
        assert_eq!(started.load(Ordering::Relaxed), N);
        assert_eq!(sum, N * (N - 1) / 2);
    }

    fn send_statement_evaluates_before_choosing() {
        // Go's sendstmt: the value of a send case is computed even if another case wins.
        let evaluated = AtomicUsize::new(0);
        let value = || {
            evaluated.fetch_add(1, Ordering::Relaxed);
            1u32
        };
        let (tx, _rx) = chan::bounded::<u32>(0);
        let (ready_tx, ready_rx) = chan::bounded::<u32>(1);
        ready_tx.send(5).unwrap();
        select! {
            send(tx, value()) -> _ => panic!("nobody receives"),
            recv(ready_rx) -> m => assert_eq!(m, Ok(5)),
        }
        assert_eq!(evaluated.load(Ordering::Relaxed), 1);
    }
}
