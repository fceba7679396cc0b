//! Code written against `std::sync::mpsc` moved to `gort::chan` (`channel()` is `unbounded()`,
//! `sync_channel(n)` is `bounded(n)`): the same programs, the same outcomes.

use super::*;
use gort::chan::{self, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use std::sync::atomic::{AtomicUsize, Ordering};

suite! {
    fn smoke() {
        let (tx, rx) = chan::unbounded::<i32>();
        tx.send(1).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
    }

    fn a_boxed_value_left_in_the_channel_is_freed() {
        let (tx, rx) = chan::unbounded::<Box<i32>>();
        drop(rx);
        assert!(tx.send(Box::new(1)).is_err());
        let (tx, rx) = chan::bounded::<Box<i32>>(1);
        tx.send(Box::new(2)).unwrap();
        drop((tx, rx));
    }

    fn shared_senders() {
        let (tx, rx) = chan::unbounded::<i32>();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
    }

    fn the_port_is_gone() {
        let (tx, rx) = chan::unbounded::<i32>();
        drop(rx);
        assert!(tx.send(1).is_err());
        let tx2 = tx.clone();
        assert!(tx2.send(1).is_err());
    }

    fn the_port_goes_while_sending() {
        let (tx, rx) = chan::unbounded::<i32>();
        scope(|s| {
            s.spawn(move || {
                let _ = rx.recv();
            });
            // Sends succeed until the receiver is gone, then fail: never hang. (An unbounded
            // send never blocks: the yield lets the receiver run on a single P, where a G
            // that never reaches a blocking point would hold it, CAVEATS §1.)
            while tx.send(1).is_ok() {
                gort::yield_now();
            }
        });
    }

    fn the_senders_go_while_receiving() {
        let (tx, rx) = chan::unbounded::<i32>();
        scope(|s| {
            s.spawn(move || {
                tx.send(1).unwrap();
                tx.send(1).unwrap();
            });
            while rx.recv().is_ok() {}
        });
    }

    fn stress_shared() {
        const AMT: u32 = 3_000;
        const SENDERS: u32 = 8;
        let (tx, rx) = chan::unbounded::<u32>();
        scope(|s| {
            for _ in 0..SENDERS {
                let tx = tx.clone();
                s.spawn(move || {
                    for _ in 0..AMT {
                        tx.send(1).unwrap();
                    }
                });
            }
            drop(tx);
            let mut n = 0;
            for v in rx.iter() {
                n += v;
            }
            assert_eq!(n, AMT * SENDERS);
        });
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    fn sync_channel_stress() {
        for cap in [0usize, 1, 4] {
            let (tx, rx) = chan::bounded::<u32>(cap);
            scope(|s| {
                for _ in 0..4 {
                    let tx = tx.clone();
                    s.spawn(move || {
                        for i in 0..1_000 {
                            tx.send(i).unwrap();
                        }
                    });
                }
                drop(tx);
                assert_eq!(rx.iter().count(), 4_000);
            });
        }
    }

    fn oneshot_close_the_port_first() {
        let (tx, rx) = chan::bounded::<i32>(0);
        drop(rx);
        drop(tx);
        let (tx, rx) = chan::unbounded::<i32>();
        drop(rx);
        assert_eq!(tx.send(0), Err(SendError(0)));
    }

    fn oneshot_close_the_sender_first() {
        let (tx, rx) = chan::unbounded::<i32>();
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    fn oneshot_send_then_recv() {
        let (tx, rx) = chan::unbounded::<Box<i32>>();
        tx.send(Box::new(10)).unwrap();
        assert_eq!(*rx.recv().unwrap(), 10);
    }

    fn oneshot_try_recv_states() {
        let (tx, rx) = chan::unbounded::<i32>();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(10).unwrap();
        assert_eq!(rx.try_recv(), Ok(10));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    fn oneshot_recv_in_another_thread_then_send() {
        let (tx, rx) = chan::unbounded::<Box<i32>>();
        scope(|s| {
            s.spawn(move || assert_eq!(*rx.recv().unwrap(), 10));
            tx.send(Box::new(10)).unwrap();
        });
    }

    fn oneshot_recv_in_another_thread_then_close() {
        let (tx, rx) = chan::unbounded::<Box<i32>>();
        scope(|s| {
            let h = s.spawn(move || rx.recv());
            drop(tx);
            assert!(h.join().unwrap().is_err());
        });
    }

    fn oneshot_close_stress() {
        for _ in 0..300 {
            let (tx, rx) = chan::unbounded::<i32>();
            scope(|s| {
                s.spawn(move || drop(rx));
                s.spawn(move || drop(tx));
            });
        }
    }

    fn oneshot_send_close_stress() {
        for _ in 0..300 {
            let (tx, rx) = chan::unbounded::<i32>();
            scope(|s| {
                s.spawn(move || drop(rx));
                s.spawn(move || {
                    let _ = tx.send(1);
                });
            });
        }
    }

    fn oneshot_recv_close_stress() {
        for _ in 0..300 {
            let (tx, rx) = chan::unbounded::<i32>();
            scope(|s| {
                s.spawn(move || {
                    let _ = rx.recv();
                });
                s.spawn(move || drop(tx));
            });
        }
    }

    fn oneshot_send_recv_stress() {
        for i in 0..300 {
            let (tx, rx) = chan::unbounded::<Box<i32>>();
            scope(|s| {
                s.spawn(move || tx.send(Box::new(i)).unwrap());
                s.spawn(move || assert_eq!(*rx.recv().unwrap(), i));
            });
        }
    }

    fn a_chain_of_sends_each_in_a_new_thread() {
        // Each message is sent from a fresh thread that then spawns the next.
        fn send(tx: chan::Sender<u32>, left: u32) {
            if left == 0 {
                return;
            }
            scope(|s| {
                s.spawn(move || {
                    tx.send(left).unwrap();
                    send(tx, left - 1);
                });
            });
        }
        let (tx, rx) = chan::unbounded::<u32>();
        send(tx, 50);
        assert_eq!(rx.iter().collect::<Vec<_>>(), (1..=50).rev().collect::<Vec<_>>());
    }

    fn recv_a_lot() {
        let (tx, rx) = chan::unbounded::<u32>();
        for i in 0..10_000 {
            tx.send(i).unwrap();
        }
        for i in 0..10_000 {
            assert_eq!(rx.recv(), Ok(i));
        }
    }

    fn shared_recv_timeout() {
        let (tx, rx) = chan::unbounded::<()>();
        scope(|s| {
            for _ in 0..10 {
                let tx = tx.clone();
                s.spawn(move || tx.send(()).unwrap());
            }
            for _ in 0..10 {
                rx.recv().unwrap();
            }
        });
        assert_eq!(rx.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
        tx.send(()).unwrap();
        assert_eq!(rx.recv_timeout(ms(1)), Ok(()));
    }

    fn shared_chan_send_after_clone_in_thread() {
        let (tx, rx) = chan::unbounded::<u32>();
        scope(|s| {
            let tx2 = tx.clone();
            s.spawn(move || tx2.send(1).unwrap());
            drop(tx);
            assert_eq!(rx.recv(), Ok(1));
        });
        assert_eq!(rx.recv(), Err(RecvError));
    }

    fn iter_stops_when_the_senders_go() {
        let (tx, rx) = chan::unbounded::<i32>();
        let (total_tx, total_rx) = chan::unbounded::<i32>();
        scope(|s| {
            s.spawn(move || {
                let mut acc = 0;
                for x in rx.iter() {
                    acc += x;
                }
                total_tx.send(acc).unwrap();
            });
            tx.send(3).unwrap();
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            drop(tx);
        });
        assert_eq!(total_rx.recv(), Ok(6));
    }

    fn iter_break_leaves_the_rest() {
        let (tx, rx) = chan::unbounded::<i32>();
        let (count_tx, count_rx) = chan::unbounded::<usize>();
        scope(|s| {
            s.spawn(move || {
                let mut count = 0;
                for x in rx.iter() {
                    if count >= 3 {
                        break;
                    }
                    count += x as usize;
                }
                count_tx.send(count).unwrap();
            });
            tx.send(2).unwrap();
            tx.send(2).unwrap();
            tx.send(2).unwrap();
            let _ = tx.send(2);
            drop(tx);
        });
        assert_eq!(count_rx.recv(), Ok(4));
    }

    fn try_iter_takes_what_is_there() {
        let (tx, rx) = chan::unbounded::<i32>();
        let (resp_tx, resp_rx) = chan::unbounded::<&'static str>();
        scope(|s| {
            s.spawn(move || {
                let mut count = 0;
                loop {
                    for x in rx.try_iter() {
                        tx_total(&mut count, x);
                    }
                    if count == 6 {
                        resp_tx.send("done").unwrap();
                        return;
                    }
                    gort::yield_now();
                }
            });
            for _ in 0..3 {
                tx.send(2).unwrap();
            }
            assert_eq!(resp_rx.recv(), Ok("done"));
        });

        fn tx_total(count: &mut i32, x: i32) {
            *count += x;
        }
    }

    fn into_iter_owns_the_receiver() {
        let (tx, rx) = chan::unbounded::<i32>();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        let mut it = rx.into_iter();
        assert_eq!(it.next(), Some(1));
        assert_eq!(it.next(), Some(2));
        assert_eq!(it.next(), None);
    }

    fn sync_try_send_states() {
        let (tx, rx) = chan::bounded::<i32>(1);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
        assert_eq!(rx.recv(), Ok(1));
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Closed(1)));
    }

    fn sync_channel_zero_handshake() {
        let (tx, rx) = chan::bounded::<i32>(0);
        let (done_tx, done_rx) = chan::bounded::<()>(0);
        scope(|s| {
            s.spawn(move || {
                assert_eq!(rx.recv(), Ok(1));
                done_tx.send(()).unwrap();
            });
            tx.send(1).unwrap();
            // The handshake: the send returned, so the receiver has the value.
            done_rx.recv().unwrap();
        });
    }

    fn the_receiver_goes_while_a_sync_sender_waits() {
        let (tx, rx) = chan::bounded::<i32>(0);
        scope(|s| {
            let h = s.spawn(move || tx.send(1));
            gort::time::sleep(ms(2));
            drop(rx);
            assert_eq!(h.join().unwrap(), Err(SendError(1)));
        });
    }

    fn senders_dropped_in_threads_count_exactly() {
        let (tx, rx) = chan::unbounded::<()>();
        let live = AtomicUsize::new(0);
        scope(|s| {
            for _ in 0..16 {
                let tx = tx.clone();
                let live = &live;
                live.fetch_add(1, Ordering::SeqCst);
                s.spawn(move || {
                    tx.send(()).unwrap();
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
            drop(tx);
            assert_eq!(rx.iter().count(), 16);
        });
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }
}
