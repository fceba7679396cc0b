//! `select!`, `select_biased!` and the `Select` builder: which arm runs, what it gets, and
//! that nothing is lost or duplicated when selects race each other.

use super::*;
use gort::chan::{self, Receiver, RecvError, Select, SendError, Sender, TryRecvError};
use gort::{select, select_biased};
use std::sync::atomic::{AtomicUsize, Ordering};

suite! {
    fn the_ready_arm_runs() {
        let (tx1, rx1) = chan::unbounded::<u32>();
        let (_tx2, rx2) = chan::unbounded::<u32>();
        tx1.send(1).unwrap();
        let got = select! {
            recv(rx1) -> m => m,
            recv(rx2) -> _ => panic!("nothing was sent on rx2"),
        };
        assert_eq!(got, Ok(1));
    }

    fn a_closed_channel_is_ready_with_an_error() {
        let (tx1, rx1) = chan::unbounded::<u32>();
        let (_tx2, rx2) = chan::unbounded::<u32>();
        drop(tx1);
        select! {
            recv(rx1) -> m => assert_eq!(m, Err(RecvError)),
            recv(rx2) -> _ => panic!("nothing was sent on rx2"),
        }
        // A send arm on a channel whose receivers are gone is ready and gives the value back.
        let (tx, rx) = chan::bounded::<String>(0);
        drop(rx);
        select! {
            send(tx, "v".to_string()) -> r => assert_eq!(r, Err(SendError("v".to_string()))),
        }
    }

    fn default_runs_when_nothing_is_ready() {
        let (_tx, rx) = chan::bounded::<u32>(0);
        let mut hits = 0;
        for _ in 0..100 {
            select! {
                recv(rx) -> _ => panic!("nothing was sent"),
                default => hits += 1,
            }
            select! {
                recv(rx) -> _ => panic!("nothing was sent"),
                default() => hits += 1,
            }
        }
        assert_eq!(hits, 200);
    }

    fn default_with_a_timeout() {
        let (tx, rx) = chan::bounded::<u32>(0);
        let r = select! {
            recv(rx) -> _ => "recv",
            default(ms(3)) => "timeout",
        };
        assert_eq!(r, "timeout");
        scope(|s| {
            s.spawn(|| tx.send(4).unwrap());
            let r = select! {
                recv(rx) -> m => { assert_eq!(m, Ok(4)); "recv" }
                default(FOREVER) => "timeout",
            };
            assert_eq!(r, "recv");
        });
    }

    fn a_select_that_waits_is_woken_by_either_side() {
        let (tx1, rx1) = chan::bounded::<u32>(0);
        let (tx2, rx2) = chan::bounded::<u32>(0);
        scope(|s| {
            s.spawn(|| {
                gort::time::sleep(ms(2));
                tx2.send(2).unwrap();
            });
            select! {
                recv(rx1) -> _ => panic!("nothing was sent on rx1"),
                recv(rx2) -> m => assert_eq!(m, Ok(2)),
            }
            s.spawn(|| {
                gort::time::sleep(ms(2));
                drop(tx1);
            });
            select! {
                recv(rx1) -> m => assert_eq!(m, Err(RecvError)),
                recv(rx2) -> _ => panic!("nothing more was sent on rx2"),
            }
        });
    }

    fn a_waiting_send_arm() {
        let (tx, rx) = chan::bounded::<u32>(0);
        let (_tx2, rx2) = chan::bounded::<u32>(0);
        scope(|s| {
            s.spawn(|| {
                gort::time::sleep(ms(2));
                assert_eq!(rx.recv(), Ok(8));
            });
            select! {
                send(tx, 8) -> r => r.unwrap(),
                recv(rx2) -> _ => panic!("nothing was sent on rx2"),
            }
        });
    }

    fn unchosen_send_values_are_dropped_once() {
        #[derive(Debug)]
        struct D<'a>(&'a AtomicUsize);
        impl Drop for D<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = AtomicUsize::new(0);
        let (tx1, rx1) = chan::bounded::<D>(1);
        let (tx2, rx2) = chan::bounded::<D>(1);
        for _ in 0..100 {
            select! {
                send(tx1, D(&drops)) -> r => r.unwrap(),
                send(tx2, D(&drops)) -> r => r.unwrap(),
            }
            // One value sent (and then received and dropped), the other dropped unsent.
            let got = select! {
                recv(rx1) -> m => m.unwrap(),
                recv(rx2) -> m => m.unwrap(),
            };
            drop(got);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 200);
    }

    fn duplicate_arms_on_one_channel() {
        let (tx, rx) = chan::unbounded::<u32>();
        let (mut a, mut b) = (0, 0);
        for i in 0..2_000 {
            tx.send(i).unwrap();
            select! {
                recv(rx) -> m => { assert_eq!(m, Ok(i)); a += 1; }
                recv(rx) -> m => { assert_eq!(m, Ok(i)); b += 1; }
            }
        }
        assert_eq!(a + b, 2_000);
        assert!(a > 200 && b > 200, "{a} / {b}");
    }

    fn biased_prefers_the_first_ready_arm() {
        let (tx1, rx1) = chan::unbounded::<u32>();
        let (tx2, rx2) = chan::unbounded::<u32>();
        for _ in 0..100 {
            tx1.send(1).unwrap();
            tx2.send(2).unwrap();
        }
        for _ in 0..100 {
            select_biased! {
                recv(rx1) -> m => assert_eq!(m, Ok(1)),
                recv(rx2) -> _ => panic!("the first arm was ready"),
            }
        }
        for _ in 0..100 {
            select_biased! {
                recv(rx1) -> _ => panic!("rx1 is drained"),
                recv(rx2) -> m => assert_eq!(m, Ok(2)),
                default => panic!("rx2 was ready"),
            }
        }
    }

    fn never_arms_switch_a_channel_off() {
        let (tx, rx) = chan::unbounded::<u32>();
        let mut maybe: Option<Receiver<u32>> = Some(rx);
        let mut got = Vec::new();
        tx.send(1).unwrap();
        drop(tx);
        for _ in 0..3 {
            select! {
                recv(maybe.as_ref().unwrap_or(&chan::never())) -> m => match m {
                    Ok(v) => got.push(v),
                    // Closed: switch the arm off, as a Go loop sets the channel to nil.
                    Err(RecvError) => maybe = None,
                },
                default(ms(2)) => got.push(0),
            }
        }
        assert_eq!(got, [1, 0]);
        assert!(maybe.is_none());
    }

    fn trailing_commas_and_block_forms() {
        let (tx, rx) = chan::unbounded::<u32>();
        select! {
            send(tx, 1,) -> r => { r.unwrap(); },
            default(FOREVER,) => panic!("the send is ready"),
        }
        select! {
            recv(rx,) -> m => { assert_eq!(m, Ok(1)) }
            default() => { panic!("the recv is ready") }
        }
        let v = select! {
            recv(rx) -> _ => 0,
            default => 5
        };
        assert_eq!(v, 5);
    }

    fn many_arms_only_one_ready() {
        const N: usize = 16;
        let chans: Vec<(Sender<usize>, Receiver<usize>)> =
            (0..N).map(|_| chan::bounded(1)).collect();
        for k in 0..N {
            chans[k].0.send(k).unwrap();
            let mut outs: Vec<Option<Result<usize, RecvError>>> = (0..N).map(|_| None).collect();
            let mut sel = Select::new();
            let mut idx = Vec::new();
            for ((_, rx), out) in chans.iter().zip(outs.iter_mut()) {
                idx.push(sel.recv(rx, out));
            }
            let i = sel.wait();
            assert_eq!(i, idx[k]);
            assert_eq!(outs[k], Some(Ok(k)));
            assert_eq!(outs.iter().filter(|o| o.is_some()).count(), 1);
        }
    }

    fn builder_try_wait_and_wait_timeout() {
        let (tx, rx) = chan::bounded::<u32>(1);
        {
            let mut out = None;
            let mut sel = Select::new();
            sel.recv(&rx, &mut out);
            assert_eq!(sel.try_wait(), None);
        }
        {
            let mut out = None;
            let mut sel = Select::new();
            sel.recv(&rx, &mut out);
            assert_eq!(sel.wait_timeout(ms(2)), None);
            assert_eq!(out, None);
        }
        tx.send(3).unwrap();
        let mut out = None;
        let mut sel = Select::new();
        let i = sel.recv(&rx, &mut out);
        assert_eq!(sel.wait_timeout(FOREVER), Some(i));
        assert_eq!(out, Some(Ok(3)));
        // An empty selection times out, and `try_wait` finds nothing.
        assert_eq!(Select::new().wait_timeout(ms(1)), None);
        assert_eq!(Select::new().try_wait(), None);
    }

    fn builder_with_send_cases() {
        let (tx, rx) = chan::bounded::<u32>(0);
        scope(|s| {
            s.spawn(|| assert_eq!(rx.recv(), Ok(11)));
            let mut out = None;
            let mut sel = Select::new();
            let i = sel.send(&tx, 11, &mut out);
            assert_eq!(sel.wait(), i);
            assert_eq!(out, Some(Ok(())));
        });
    }

    fn selects_on_both_sides_of_a_rendezvous() {
        // Senders and receivers all use select: every value matched exactly once.
        const SIDES: usize = 4;
        const EACH: usize = 1_000;
        let (tx, rx) = chan::bounded::<usize>(0);
        let (_idle_tx, idle_rx) = chan::bounded::<usize>(0);
        let sum = AtomicUsize::new(0);
        scope(|s| {
            for _ in 0..SIDES {
                s.spawn(|| {
                    for i in 0..EACH {
                        select! {
                            send(tx, i) -> r => r.unwrap(),
                            recv(idle_rx) -> _ => panic!("nothing is sent on idle"),
                        }
                    }
                });
                s.spawn(|| {
                    for _ in 0..EACH {
                        select! {
                            recv(rx) -> m => { sum.fetch_add(m.unwrap(), Ordering::Relaxed); }
                            recv(idle_rx) -> _ => panic!("nothing is sent on idle"),
                        }
                    }
                });
            }
        });
        assert_eq!(sum.load(Ordering::Relaxed), SIDES * EACH * (EACH - 1) / 2);
    }

    fn send_or_recv_on_the_same_rendezvous() {
        // Each thread offers to send or receive on one channel; a select never pairs with
        // its own other arm, so every exchange pairs two threads.
        const THREADS: usize = 6;
        const ROUNDS: usize = 300;
        let (tx, rx) = chan::bounded::<usize>(0);
        let sent = AtomicUsize::new(0);
        let received = AtomicUsize::new(0);
        let (stop_tx, stop_rx) = chan::bounded::<()>(0);
        let (fin_tx, fin_rx) = chan::unbounded::<()>();
        scope(|s| {
            for t in 0..THREADS {
                let (tx, rx, stop_rx, fin_tx) = (&tx, &rx, &stop_rx, fin_tx.clone());
                let (sent, received) = (&sent, &received);
                s.spawn(move || {
                    let mut done = 0;
                    while done < ROUNDS {
                        select! {
                            send(tx, t) -> r => { r.unwrap(); sent.fetch_add(1, Ordering::Relaxed); done += 1; }
                            recv(rx) -> m => { m.unwrap(); received.fetch_add(1, Ordering::Relaxed); done += 1; }
                            recv(stop_rx) -> _ => break,
                        }
                    }
                    fin_tx.send(()).unwrap();
                });
            }
            // While two threads are left they can pair; the last one alone cannot, and the
            // closed stop channel releases it.
            for _ in 0..THREADS - 1 {
                fin_rx.recv().unwrap();
            }
            drop(stop_tx);
        });
        assert_eq!(sent.load(Ordering::Relaxed), received.load(Ordering::Relaxed));
        assert!(sent.load(Ordering::Relaxed) >= (THREADS - 1) * ROUNDS / 2);
    }

    fn stress_recv_from_two() {
        const N: usize = 10_000;
        let (tx1, rx1) = chan::bounded::<usize>(3);
        let (tx2, rx2) = chan::bounded::<usize>(0);
        let mut got = vec![0u8; N];
        scope(|s| {
            s.spawn(move || {
                for i in 0..N {
                    if i % 2 == 0 {
                        tx1.send(i).unwrap();
                    } else {
                        tx2.send(i).unwrap();
                    }
                }
            });
            let mut closed = 0;
            while closed < 2 {
                select! {
                    recv(rx1) -> m => match m { Ok(v) => got[v] += 1, Err(_) => closed = 2 },
                    recv(rx2) -> m => match m { Ok(v) => got[v] += 1, Err(_) => closed = 2 },
                }
            }
        });
        // After one closed, the rest drains without select.
        for v in rx1.try_iter().chain(rx2.try_iter()) {
            got[v] += 1;
        }
        assert!(got.iter().all(|&c| c == 1));
    }

    fn stress_send_to_two() {
        const N: usize = 10_000;
        let (tx1, rx1) = chan::bounded::<usize>(0);
        let (tx2, rx2) = chan::bounded::<usize>(5);
        let total = AtomicUsize::new(0);
        scope(|s| {
            s.spawn(|| {
                for i in 0..N {
                    select! {
                        send(tx1, i) -> r => r.unwrap(),
                        send(tx2, i) -> r => r.unwrap(),
                    }
                }
                drop((tx1, tx2));
            });
            s.spawn(|| {
                for v in rx1.iter() {
                    total.fetch_add(v, Ordering::Relaxed);
                }
            });
            for v in rx2.iter() {
                total.fetch_add(v, Ordering::Relaxed);
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), N * (N - 1) / 2);
    }

    fn stress_mixed_with_timeouts() {
        const N: usize = 2_000;
        let (tx1, rx1) = chan::bounded::<usize>(0);
        let (tx2, rx2) = chan::bounded::<usize>(0);
        let mut got = 0;
        scope(|s| {
            s.spawn(|| {
                // Offers a value on tx1 while waiting for one on rx2; timeouts make it loop.
                let mut sent = 0;
                let mut received = 0;
                while sent < N || received < N {
                    if sent < N {
                        select! {
                            send(tx1, sent) -> r => { r.unwrap(); sent += 1; }
                            recv(rx2) -> m => { assert_eq!(m, Ok(received)); received += 1; }
                            default(Duration::from_micros(100)) => {}
                        }
                    } else {
                        assert_eq!(rx2.recv(), Ok(received));
                        received += 1;
                    }
                }
            });
            let mut sent = 0;
            while got < N || sent < N {
                if sent < N {
                    select! {
                        recv(rx1) -> m => { assert_eq!(m, Ok(got)); got += 1; }
                        send(tx2, sent) -> r => { r.unwrap(); sent += 1; }
                        default(Duration::from_micros(100)) => {}
                    }
                } else {
                    assert_eq!(rx1.recv(), Ok(got));
                    got += 1;
                }
            }
        });
        assert_eq!(got, N);
    }

    fn a_loop_of_tries() {
        let (tx, rx) = chan::bounded::<u32>(0);
        scope(|s| {
            s.spawn(|| {
                for i in 0..50 {
                    tx.send(i).unwrap();
                }
            });
            let mut next = 0;
            while next < 50 {
                select! {
                    recv(rx) -> m => { assert_eq!(m, Ok(next)); next += 1; }
                    default => gort::yield_now(),
                }
            }
        });
    }

    fn select_over_cloned_receivers() {
        let (tx, rx) = chan::unbounded::<u32>();
        let rx2 = rx.clone();
        for i in 0..1_000 {
            tx.send(i).unwrap();
        }
        drop(tx);
        let mut n = 0;
        loop {
            select! {
                recv(rx) -> m => if m.is_err() { break } else { n += 1 },
                recv(rx2) -> m => if m.is_err() { break } else { n += 1 },
            }
        }
        assert_eq!(n, 1_000);
    }

    fn an_empty_select_with_a_timeout() {
        let r = select! {
            default(ms(1)) => 7,
        };
        assert_eq!(r, 7);
        let r = select! {
            default => 8,
        };
        assert_eq!(r, 8);
    }

    fn after_arms_in_a_select() {
        let (_tx, rx) = chan::bounded::<u32>(0);
        let r = select! {
            recv(rx) -> _ => "msg",
            recv(gort::time::after(ms(2))) -> t => { t.unwrap(); "after" }
        };
        assert_eq!(r, "after");
        let r = select! {
            recv(gort::time::after(Duration::ZERO)) -> _ => "zero",
            default => "default",
        };
        assert_eq!(r, "zero");
    }

    fn ready_names_the_ready_case_without_doing_it() {
        let (tx1, rx1) = chan::unbounded::<u32>();
        let (_tx2, rx2) = chan::unbounded::<u32>();
        tx1.send(1).unwrap();
        let (mut o1, mut o2) = (None, None);
        let mut sel = Select::new();
        let i1 = sel.recv(&rx1, &mut o1);
        let _i2 = sel.recv(&rx2, &mut o2);
        for _ in 0..10 {
            assert_eq!(sel.ready(), i1);
            assert_eq!(sel.try_ready(), Some(i1));
            assert_eq!(sel.ready_timeout(FOREVER), Some(i1));
        }
        drop(sel);
        // Nothing was taken.
        assert_eq!(rx1.len(), 1);
        assert_eq!((o1, o2), (None, None));
    }

    fn ready_finds_nothing_and_times_out() {
        for cap in [0usize, 2] {
            let (_tx, rx) = chan::bounded::<u32>(cap);
            let (tx2, _rx2) = chan::bounded::<u32>(0);
            let (mut o1, mut o2) = (None, None);
            let mut sel = Select::new();
            sel.recv(&rx, &mut o1);
            // A rendezvous send with no receiver waiting is not ready either.
            sel.send(&tx2, 5, &mut o2);
            assert_eq!(sel.try_ready(), None);
            assert_eq!(sel.ready_timeout(ms(2)), None);
        }
        assert_eq!(Select::new().try_ready(), None);
        assert_eq!(Select::new().ready_timeout(ms(1)), None);
    }

    fn ready_wakes_when_another_thread_sends() {
        for cap in [Some(0usize), Some(3), None] {
            let (tx, rx) = match cap {
                Some(c) => chan::bounded::<u32>(c),
                None => chan::unbounded::<u32>(),
            };
            let (_tx2, rx2) = chan::bounded::<u32>(0);
            scope(|s| {
                s.spawn(|| {
                    gort::time::sleep(ms(2));
                    tx.send(7).unwrap();
                });
                let (mut o1, mut o2) = (None, None);
                let mut sel = Select::new();
                sel.recv(&rx2, &mut o2);
                let i = sel.recv(&rx, &mut o1);
                assert_eq!(sel.ready(), i);
                drop(sel);
                // For a rendezvous, "ready" means a sender is waiting: the value is there.
                assert_eq!(rx.try_recv(), Ok(7));
            });
        }
    }

    fn ready_sees_closing_and_space() {
        // A closed channel is ready (the operation would fail at once).
        let (tx, rx) = chan::bounded::<u32>(0);
        let mut o = None;
        scope(|s| {
            s.spawn(|| {
                gort::time::sleep(ms(2));
                tx.close();
            });
            let mut sel = Select::new();
            let i = sel.recv(&rx, &mut o);
            assert_eq!(sel.ready(), i);
        });
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        // A full buffer becomes ready for a send when a receiver makes room.
        let (tx, rx) = chan::bounded::<u32>(1);
        tx.send(1).unwrap();
        let mut o = None;
        scope(|s| {
            s.spawn(|| {
                gort::time::sleep(ms(2));
                assert_eq!(rx.recv(), Ok(1));
            });
            let mut sel = Select::new();
            let i = sel.send(&tx, 2, &mut o);
            assert_eq!(sel.ready(), i);
        });
        assert_eq!(tx.try_send(3), Ok(()));
        // A rendezvous send is ready once a receiver waits.
        let (tx, rx) = chan::bounded::<u32>(0);
        let mut o = None;
        scope(|s| {
            let h = s.spawn(|| rx.recv());
            let mut sel = Select::new();
            let i = sel.send(&tx, 0, &mut o);
            assert_eq!(sel.ready(), i);
            drop(sel);
            assert_eq!(tx.try_send(4), Ok(()));
            assert_eq!(h.join().unwrap(), Ok(4));
        });
    }

    fn ready_then_try_recv_consumes_everything_once() {
        // Consumers wait with `ready` and then take with `try_recv`, retrying when another
        // consumer got there first: every message is taken exactly once.
        const CONSUMERS: usize = 4;
        const N: usize = 4_000;
        for cap in [0usize, 1, 16] {
            let (tx_a, rx_a) = chan::bounded::<usize>(cap);
            let (tx_b, rx_b) = chan::bounded::<usize>(cap);
            let seen: Vec<std::sync::atomic::AtomicUsize> =
                (0..N).map(|_| std::sync::atomic::AtomicUsize::new(0)).collect();
            scope(|s| {
                for _ in 0..CONSUMERS {
                    let (rx_a, rx_b, seen) = (&rx_a, &rx_b, &seen);
                    s.spawn(move || {
                        let mut closed = [false, false];
                        while !(closed[0] && closed[1]) {
                            let off = chan::never::<usize>();
                            let (mut oa, mut ob) = (None, None);
                            let mut sel = Select::new();
                            let a = sel.recv(if closed[0] { &off } else { rx_a }, &mut oa);
                            let _b = sel.recv(if closed[1] { &off } else { rx_b }, &mut ob);
                            let i = sel.ready();
                            drop(sel);
                            let (rx, k) = if i == a { (rx_a, 0) } else { (rx_b, 1) };
                            match rx.try_recv() {
                                Ok(v) => {
                                    seen[v].fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TryRecvError::Empty) => {}
                                Err(TryRecvError::Closed) => closed[k] = true,
                            }
                        }
                    });
                }
                s.spawn(move || {
                    for v in 0..N {
                        if v % 2 == 0 { tx_a.send(v).unwrap() } else { tx_b.send(v).unwrap() }
                    }
                });
            });
            assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1), "cap {cap}");
        }
    }
}
