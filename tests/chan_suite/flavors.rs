//! The same behaviour checked on all three flavours: a buffered channel (`bounded(n)`, the
//! lock-free ring), `unbounded()` and the rendezvous `bounded(0)`; then what is particular
//! to each.

use super::*;
use gort::chan::{
    self, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender, TryRecvError,
    TrySendError,
};
use gort::select;
use gort::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts its drops in a shared counter.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A tiny deterministic generator (the tests must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Tests that hold for every flavour. Each flavour module defines `CAP` (the capacity, `None`
/// for unbounded) and `mk()`.
macro_rules! generic_tests {
    () => {
        suite! {
            fn smoke_across_threads() {
                let (tx, rx) = mk::<u32>();
                scope(|s| {
                    s.spawn(move || tx.send(7).unwrap());
                    assert_eq!(rx.recv(), Ok(7));
                });
            }

            fn capacity_len_and_fullness() {
                let (tx, rx) = mk::<u32>();
                assert_eq!(tx.capacity(), CAP);
                assert_eq!(rx.capacity(), CAP);
                assert_eq!(tx.len(), 0);
                assert!(rx.is_empty());
                // Full means "a send would wait": always for a rendezvous, never unbounded.
                assert_eq!(tx.is_full(), CAP == Some(0));
                assert_eq!(rx.is_full(), CAP == Some(0));
            }

            fn try_recv_empty_then_value_then_closed() {
                let (tx, rx) = mk::<u32>();
                let (go_tx, go_rx) = chan::bounded::<()>(0);
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                scope(|s| {
                    s.spawn(move || {
                        go_rx.recv().unwrap();
                        tx.send(1).unwrap();
                        // Dropping the only sender closes the channel.
                    });
                    go_tx.send(()).unwrap();
                    assert_eq!(rx.recv(), Ok(1));
                });
                assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
                assert_eq!(rx.recv(), Err(RecvError));
                assert!(rx.is_closed());
            }

            fn recv_waits_for_a_late_sender() {
                let (tx, rx) = mk::<u32>();
                scope(|s| {
                    s.spawn(move || {
                        gort::time::sleep(ms(5));
                        tx.send(3).unwrap();
                    });
                    assert_eq!(rx.recv(), Ok(3));
                });
            }

            fn recv_timeout_expires_and_reports_closed() {
                let (tx, rx) = mk::<u32>();
                assert_eq!(rx.recv_timeout(ms(5)), Err(RecvTimeoutError::Timeout));
                assert_eq!(rx.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Timeout));
                drop(tx);
                // Closed: fails at once, whatever the timeout.
                assert_eq!(rx.recv_timeout(FOREVER), Err(RecvTimeoutError::Closed));
            }

            fn recv_timeout_gets_a_value() {
                let (tx, rx) = mk::<u32>();
                scope(|s| {
                    s.spawn(move || {
                        gort::time::sleep(ms(2));
                        tx.send(9).unwrap();
                    });
                    assert_eq!(rx.recv_timeout(FOREVER), Ok(9));
                });
            }

            fn sending_without_receivers_gives_the_value_back() {
                let (tx, rx) = mk::<String>();
                drop(rx);
                assert!(tx.is_closed());
                assert_eq!(tx.send("a".into()), Err(SendError("a".into())));
                assert_eq!(tx.try_send("b".into()), Err(TrySendError::Closed("b".into())));
                assert_eq!(
                    tx.send_timeout("c".into(), FOREVER),
                    Err(SendTimeoutError::Closed("c".into()))
                );
            }

            fn close_wakes_a_blocked_receiver() {
                let (tx, rx) = mk::<u32>();
                let (ready_tx, ready_rx) = chan::bounded::<()>(0);
                scope(|s| {
                    let h = s.spawn(move || {
                        ready_tx.send(()).unwrap();
                        rx.recv()
                    });
                    ready_rx.recv().unwrap();
                    gort::time::sleep(ms(2));
                    drop(tx);
                    assert_eq!(h.join().unwrap(), Err(RecvError));
                });
            }

            fn explicit_close_with_senders_alive() {
                let (tx, rx) = mk::<u32>();
                let tx2 = tx.clone();
                scope(|s| {
                    let h = s.spawn(|| rx.recv());
                    gort::time::sleep(ms(2));
                    tx2.close();
                    assert_eq!(h.join().unwrap(), Err(RecvError));
                });
                assert!(tx.is_closed());
                assert_eq!(tx.send(1), Err(SendError(1)));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
            }

            fn last_clone_closes() {
                let (tx, rx) = mk::<u32>();
                let clones: Vec<_> = (0..5).map(|_| tx.clone()).collect();
                drop(tx);
                for (i, c) in clones.into_iter().enumerate() {
                    assert!(!rx.is_closed(), "closed with {} senders left", 5 - i);
                    drop(c);
                }
                assert!(rx.is_closed());
                assert_eq!(rx.recv(), Err(RecvError));
            }

            fn same_channel_across_clones() {
                let (tx, rx) = mk::<u32>();
                let (tx2, rx2) = mk::<u32>();
                assert!(tx.same_channel(&tx.clone()));
                assert!(rx.same_channel(&rx.clone()));
                assert!(!tx.same_channel(&tx2));
                assert!(!rx.same_channel(&rx2));
            }

            fn spsc_in_order() {
                const N: u32 = 20_000;
                let (tx, rx) = mk::<u32>();
                scope(|s| {
                    s.spawn(move || {
                        for i in 0..N {
                            tx.send(i).unwrap();
                        }
                    });
                    for i in 0..N {
                        assert_eq!(rx.recv(), Ok(i));
                    }
                    assert_eq!(rx.recv(), Err(RecvError));
                });
            }

            fn mpmc_each_message_exactly_once() {
                const SENDERS: usize = 4;
                const RECEIVERS: usize = 4;
                const EACH: usize = 5_000;
                let (tx, rx) = mk::<usize>();
                let seen: Vec<AtomicUsize> =
                    (0..SENDERS * EACH).map(|_| AtomicUsize::new(0)).collect();
                scope(|s| {
                    for k in 0..SENDERS {
                        let tx = tx.clone();
                        s.spawn(move || {
                            for i in 0..EACH {
                                tx.send(k * EACH + i).unwrap();
                            }
                        });
                    }
                    drop(tx);
                    for _ in 0..RECEIVERS {
                        let rx = rx.clone();
                        let seen = &seen;
                        s.spawn(move || {
                            let mut last = vec![None::<usize>; SENDERS];
                            for v in rx.iter() {
                                seen[v].fetch_add(1, Ordering::Relaxed);
                                // Each sender's messages arrive in the order sent.
                                let k = v / EACH;
                                assert!(last[k] < Some(v), "sender {k}: {v} after {:?}", last[k]);
                                last[k] = Some(v);
                            }
                        });
                    }
                });
                for (v, c) in seen.iter().enumerate() {
                    assert_eq!(c.load(Ordering::Relaxed), 1, "message {v}");
                }
            }

            fn oneshot_rounds() {
                for i in 0..300u32 {
                    let (tx, rx) = mk::<u32>();
                    scope(|s| {
                        let h = s.spawn(move || rx.recv());
                        tx.send(i).unwrap();
                        assert_eq!(h.join().unwrap(), Ok(i));
                    });
                }
            }

            fn iter_until_closed() {
                const N: u64 = 5_000;
                for _ in 0..4 {
                    let (tx, rx) = mk::<u64>();
                    let sum = scope(|s| {
                        s.spawn(move || {
                            for i in 1..=N {
                                tx.send(i).unwrap();
                            }
                        });
                        rx.iter().sum::<u64>()
                    });
                    assert_eq!(sum, N * (N + 1) / 2);
                }
            }

            fn timeouts_on_both_sides_lose_nothing() {
                const N: u32 = 500;
                let (tx, rx) = mk::<u32>();
                scope(|s| {
                    s.spawn(move || {
                        for i in 0..N {
                            let mut v = i;
                            loop {
                                match tx.send_timeout(v, Duration::from_micros(200)) {
                                    Ok(()) => break,
                                    Err(SendTimeoutError::Timeout(back)) => v = back,
                                    Err(e) => panic!("{e}"),
                                }
                            }
                            if i % 7 == 0 {
                                gort::time::sleep(Duration::from_micros(300));
                            }
                        }
                    });
                    let mut next = 0;
                    while next < N {
                        match rx.recv_timeout(Duration::from_micros(200)) {
                            Ok(v) => {
                                assert_eq!(v, next);
                                next += 1;
                            }
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(e) => panic!("{e}"),
                        }
                        if next % 11 == 0 {
                            gort::time::sleep(Duration::from_micros(300));
                        }
                    }
                });
                assert_eq!(rx.recv(), Err(RecvError));
            }

            fn every_message_is_dropped_exactly_once() {
                let drops = Arc::new(AtomicUsize::new(0));
                let mut rng = Lcg(7);
                for _ in 0..12 {
                    let sends = (rng.next() % 100) as usize;
                    let recvs = (rng.next() % 100) as usize;
                    let (tx, rx) = mk::<Counted>();
                    let before = drops.load(Ordering::SeqCst);
                    let received = scope(|s| {
                        let d = drops.clone();
                        let tx2 = tx.clone();
                        s.spawn(move || {
                            let mut sent = 0;
                            for _ in 0..sends {
                                // A rendezvous or full channel with nobody left to take the
                                // value refuses it (after the receiver stops, it is dropped).
                                match tx2.send_timeout(Counted(d.clone()), Duration::from_micros(300)) {
                                    Ok(()) => sent += 1,
                                    Err(e) => drop(e),
                                }
                            }
                            sent
                        });
                        let mut got = 0;
                        for _ in 0..recvs {
                            match rx.recv_timeout(Duration::from_micros(300)) {
                                Ok(v) => {
                                    drop(v);
                                    got += 1;
                                }
                                Err(RecvTimeoutError::Timeout) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        got
                    });
                    drop((tx, rx));
                    // Every value made was dropped once: the ones refused, received, or left
                    // in the buffer when the channel went.
                    assert_eq!(drops.load(Ordering::SeqCst) - before, sends, "received {received}");
                }
            }

            fn channels_travel_through_channels() {
                type Link = Receiver<Sender<u32>>;
                const HOPS: u32 = 200;
                let (tx, rx) = mk::<Link>();
                scope(|s| {
                    s.spawn(move || {
                        for i in 0..HOPS {
                            // Send a channel end; the other side sends back on what it got.
                            let (back_tx, back_rx) = mk::<Sender<u32>>();
                            tx.send(back_rx).unwrap();
                            let (v_tx, v_rx) = chan::unbounded();
                            back_tx.send(v_tx).unwrap();
                            assert_eq!(v_rx.recv(), Ok(i));
                        }
                    });
                    for i in 0..HOPS {
                        let link = rx.recv().unwrap();
                        link.recv().unwrap().send(i).unwrap();
                    }
                });
            }

            fn ping_pong() {
                let (a_tx, a_rx) = mk::<u32>();
                let (b_tx, b_rx) = mk::<u32>();
                scope(|s| {
                    s.spawn(move || {
                        while let Ok(v) = a_rx.recv() {
                            b_tx.send(v + 1).unwrap();
                        }
                    });
                    let mut v = 0;
                    for _ in 0..2_000 {
                        a_tx.send(v).unwrap();
                        v = b_rx.recv().unwrap();
                    }
                    assert_eq!(v, 2_000);
                    drop(a_tx);
                });
            }

            fn select_is_fair_between_two_ready_channels() {
                // Both sides select over both channels: whichever side arrives second sees
                // both arms ready and picks one uniformly, so neither channel is starved.
                const ROUNDS: usize = 4_000;
                let (tx1, rx1) = mk::<u8>();
                let (tx2, rx2) = mk::<u8>();
                let mut hits = [0usize; 2];
                scope(|s| {
                    s.spawn(|| {
                        for _ in 0..ROUNDS {
                            select! {
                                send(tx1, 0) -> r => r.unwrap(),
                                send(tx2, 1) -> r => r.unwrap(),
                            }
                        }
                    });
                    for _ in 0..ROUNDS {
                        select! {
                            recv(rx1) -> m => hits[m.unwrap() as usize] += 1,
                            recv(rx2) -> m => hits[m.unwrap() as usize] += 1,
                        }
                    }
                });
                assert_eq!(hits[0] + hits[1], ROUNDS);
                assert!(hits.iter().all(|&h| h >= ROUNDS / 4), "{hits:?}");
            }

            fn a_recv_inside_a_send_arm() {
                let (tx, rx) = mk::<u32>();
                let (in_tx, in_rx) = chan::unbounded::<u32>();
                for i in 0..100 {
                    in_tx.send(i).unwrap();
                }
                scope(|s| {
                    s.spawn(move || {
                        for _ in 0..100 {
                            // The operand is evaluated first: one value from `in_rx` per
                            // select, sent on `tx`.
                            select! {
                                send(tx, in_rx.recv().unwrap()) -> r => r.unwrap(),
                            }
                        }
                    });
                    for i in 0..100 {
                        assert_eq!(rx.recv(), Ok(i));
                    }
                });
            }

            fn many_green_or_os_threads_on_one_channel() {
                const WORKERS: usize = 32;
                const EACH: usize = 200;
                let (tx, rx) = mk::<usize>();
                let (done_tx, done_rx) = chan::unbounded::<usize>();
                scope(|s| {
                    for _ in 0..WORKERS {
                        let rx = rx.clone();
                        let done_tx = done_tx.clone();
                        s.spawn(move || {
                            let mut n = 0;
                            while rx.recv().is_ok() {
                                n += 1;
                            }
                            done_tx.send(n).unwrap();
                        });
                    }
                    for w in 0..WORKERS {
                        let tx = tx.clone();
                        s.spawn(move || {
                            for i in 0..EACH {
                                tx.send(w * EACH + i).unwrap();
                            }
                        });
                    }
                    drop(tx);
                });
                drop(done_tx);
                assert_eq!(done_rx.iter().sum::<usize>(), WORKERS * EACH);
            }

            fn len_stays_within_the_capacity() {
                const N: usize = 10_000;
                let (tx, rx) = mk::<usize>();
                scope(|s| {
                    s.spawn(|| {
                        for i in 0..N {
                            tx.send(i).unwrap();
                            if let Some(cap) = CAP {
                                assert!(tx.len() <= cap);
                            }
                        }
                    });
                    for i in 0..N {
                        if let Some(cap) = CAP {
                            assert!(rx.len() <= cap);
                        }
                        assert_eq!(rx.recv(), Ok(i));
                    }
                });
                assert_eq!(rx.len(), 0);
            }

            fn a_panicking_thread_does_not_break_the_channel() {
                let (tx, rx) = mk::<u32>();
                let r = scope(|s| {
                    s.spawn(|| {
                        // Borrowed ends, used across a panic (they are UnwindSafe).
                        let _hold = (&tx, &rx);
                        panic!("boom in a channel user");
                    })
                    .join()
                });
                assert!(r.is_err());
                scope(|s| {
                    s.spawn(|| tx.send(5).unwrap());
                    assert_eq!(rx.recv(), Ok(5));
                });
            }
        }
    };
}

/// Tests of a flavour that can wait on a full channel (`bounded(n)` and `bounded(0)`).
macro_rules! waiting_sender_tests {
    () => {
        suite! {
            fn try_send_on_a_full_channel_is_refused() {
                let (tx, rx) = mk::<u32>();
                for i in 0..CAP.unwrap() as u32 {
                    tx.try_send(i).unwrap();
                }
                assert!(tx.is_full());
                assert_eq!(tx.try_send(99), Err(TrySendError::Full(99)));
                assert_eq!(tx.send_timeout(98, ms(2)), Err(SendTimeoutError::Timeout(98)));
                for i in 0..CAP.unwrap() as u32 {
                    assert_eq!(rx.try_recv(), Ok(i));
                }
            }

            fn a_blocked_sender_proceeds_when_space_frees() {
                let (tx, rx) = mk::<u32>();
                let n = CAP.unwrap() as u32 + 10;
                scope(|s| {
                    s.spawn(move || {
                        for i in 0..n {
                            tx.send(i).unwrap();
                        }
                    });
                    gort::time::sleep(ms(2));
                    for i in 0..n {
                        assert_eq!(rx.recv(), Ok(i));
                    }
                });
            }

            fn receivers_leaving_wake_a_blocked_sender() {
                let (tx, rx) = mk::<String>();
                for i in 0..CAP.unwrap() {
                    tx.send(i.to_string()).unwrap();
                }
                scope(|s| {
                    let h = s.spawn(|| tx.send("blocked".to_string()));
                    gort::time::sleep(ms(2));
                    drop(rx);
                    // The value comes back intact.
                    assert_eq!(h.join().unwrap(), Err(SendError("blocked".to_string())));
                });
            }

            fn close_wakes_a_blocked_sender() {
                let (tx, rx) = mk::<u32>();
                for i in 0..CAP.unwrap() as u32 {
                    tx.send(i).unwrap();
                }
                scope(|s| {
                    let h = s.spawn(|| tx.send(100));
                    gort::time::sleep(ms(2));
                    tx.close();
                    assert_eq!(h.join().unwrap(), Err(SendError(100)));
                });
                // What was buffered before the close is still delivered.
                for i in 0..CAP.unwrap() as u32 {
                    assert_eq!(rx.recv(), Ok(i));
                }
                assert_eq!(rx.recv(), Err(RecvError));
            }

            fn many_blocked_senders_all_get_through() {
                const SENDERS: usize = 16;
                let (tx, rx) = mk::<usize>();
                let got = scope(|s| {
                    for i in 0..SENDERS {
                        let tx = tx.clone();
                        s.spawn(move || tx.send(i).unwrap());
                    }
                    gort::time::sleep(ms(2));
                    let mut got: Vec<usize> = (0..SENDERS).map(|_| rx.recv().unwrap()).collect();
                    got.sort_unstable();
                    got
                });
                assert_eq!(got, (0..SENDERS).collect::<Vec<_>>());
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            }
        }
    };
}

mod array {
    use super::*;
    const CAP: Option<usize> = Some(4);
    fn mk<T>() -> (Sender<T>, Receiver<T>) {
        chan::bounded(4)
    }
    mod generic {
        use super::*;
        generic_tests!();
    }
    mod waiting_sender {
        use super::*;
        waiting_sender_tests!();
    }
}

mod list {
    use super::*;
    const CAP: Option<usize> = None;
    fn mk<T>() -> (Sender<T>, Receiver<T>) {
        chan::unbounded()
    }
    mod generic {
        use super::*;
        generic_tests!();
    }
}

mod zero {
    use super::*;
    const CAP: Option<usize> = Some(0);
    fn mk<T>() -> (Sender<T>, Receiver<T>) {
        chan::bounded(0)
    }
    mod generic {
        use super::*;
        generic_tests!();
    }
    mod waiting_sender {
        use super::*;
        // CAP is 0: the "full" tests run with no buffered value at all.
        waiting_sender_tests!();
    }
}

/// What only one flavour does.
mod specific {
    use super::*;

    suite! {
        fn buffered_values_outlive_the_senders() {
            let (tx, rx) = chan::bounded::<u32>(3);
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            drop(tx);
            assert!(rx.is_closed());
            assert_eq!(rx.len(), 2);
            assert_eq!(rx.recv(), Ok(1));
            assert_eq!(rx.try_recv(), Ok(2));
            assert_eq!(rx.recv(), Err(RecvError));
        }

        fn a_full_buffer_reports_its_length() {
            let (tx, rx) = chan::bounded::<u32>(2);
            tx.send(1).unwrap();
            assert!(!tx.is_full());
            assert_eq!(rx.len(), 1);
            tx.send(2).unwrap();
            assert!(rx.is_full());
            assert_eq!(tx.len(), 2);
            rx.recv().unwrap();
            assert!(!rx.is_full());
        }

        fn capacity_one_alternates() {
            let (tx, rx) = chan::bounded::<u32>(1);
            for i in 0..1_000 {
                tx.try_send(i).unwrap();
                assert_eq!(tx.try_send(0), Err(TrySendError::Full(0)));
                assert_eq!(rx.try_recv(), Ok(i));
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            }
        }

        fn large_buffers() {
            // Small, huge (past the ring's limit: the locked buffer) and in between.
            for cap in [1usize, 7, 1024, (1 << 20) + 1] {
                let (tx, rx) = chan::bounded::<usize>(cap);
                assert_eq!(tx.capacity(), Some(cap));
                let n = cap.min(5_000);
                for i in 0..n {
                    tx.try_send(i).unwrap();
                }
                assert_eq!(rx.len(), n);
                for i in 0..n {
                    assert_eq!(rx.try_recv(), Ok(i));
                }
            }
        }

        fn linearizable() {
            // Each thread sends and at once receives: with room for everyone, the receive
            // never finds the channel empty (a buffer of one slot per thread, and unbounded).
            const THREADS: usize = 8;
            for (tx, rx) in [chan::bounded::<usize>(THREADS), chan::unbounded()] {
                scope(|s| {
                    for _ in 0..THREADS {
                        s.spawn(|| {
                            for i in 0..2_000 {
                                tx.send(i).unwrap();
                                rx.try_recv().unwrap();
                            }
                        });
                    }
                });
            }
        }

        fn unbounded_never_blocks_a_sender() {
            let (tx, rx) = chan::unbounded::<usize>();
            for i in 0..100_000 {
                tx.try_send(i).unwrap();
            }
            assert_eq!(rx.len(), 100_000);
            assert!(!tx.is_full());
            assert_eq!(rx.try_iter().count(), 100_000);
        }

        fn unbounded_drops_what_was_left() {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = chan::unbounded();
            for _ in 0..1_000 {
                tx.send(Counted(drops.clone())).unwrap();
            }
            drop(rx.recv().unwrap());
            drop(tx);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            drop(rx);
            assert_eq!(drops.load(Ordering::SeqCst), 1_000);
        }

        fn bounded_drops_what_was_left() {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = chan::bounded(10);
            for _ in 0..10 {
                tx.send(Counted(drops.clone())).unwrap();
            }
            drop(rx.recv().unwrap());
            // Dropped in the other order: receiver first.
            drop(rx);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            drop(tx);
            assert_eq!(drops.load(Ordering::SeqCst), 10);
        }

        fn rendezvous_holds_nothing() {
            let (tx, rx) = chan::bounded::<u32>(0);
            assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
            assert_eq!(rx.len(), 0);
            assert!(tx.is_full() && rx.is_empty());
            scope(|s| {
                s.spawn(|| tx.send(2).unwrap());
                assert_eq!(rx.recv(), Ok(2));
                // The send returned only after the receive: nothing was ever buffered.
                assert_eq!(rx.len(), 0);
            });
        }

        fn rendezvous_try_send_reaches_a_waiting_receiver() {
            let (tx, rx) = chan::bounded::<u32>(0);
            scope(|s| {
                let h = s.spawn(|| rx.recv());
                // The receiver may not be waiting yet: retry until it is.
                let mut v = 5;
                loop {
                    match tx.try_send(v) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            v = back;
                            gort::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(h.join().unwrap(), Ok(5));
            });
        }

        fn rendezvous_try_recv_reaches_a_waiting_sender() {
            let (tx, rx) = chan::bounded::<u32>(0);
            scope(|s| {
                s.spawn(|| tx.send(6).unwrap());
                let v = loop {
                    match rx.try_recv() {
                        Ok(v) => break v,
                        Err(TryRecvError::Empty) => gort::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                };
                assert_eq!(v, 6);
            });
        }

        fn rendezvous_pairs_senders_with_receivers() {
            const PAIRS: usize = 64;
            let (tx, rx) = chan::bounded::<usize>(0);
            let got: Vec<AtomicUsize> = (0..PAIRS).map(|_| AtomicUsize::new(0)).collect();
            scope(|s| {
                for i in 0..PAIRS {
                    let tx = &tx;
                    s.spawn(move || tx.send(i).unwrap());
                    let rx = &rx;
                    let got = &got;
                    s.spawn(move || {
                        got[rx.recv().unwrap()].fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
            assert!(got.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }

        fn barrier_then_race_on_a_rendezvous() {
            // All sides start together: every send meets exactly one receive.
            const SIDES: usize = 8;
            const EACH: usize = 500;
            let (tx, rx) = chan::bounded::<usize>(0);
            let start = Barrier::new(2 * SIDES);
            let total = AtomicUsize::new(0);
            scope(|s| {
                for _ in 0..SIDES {
                    s.spawn(|| {
                        start.wait();
                        for i in 0..EACH {
                            tx.send(i).unwrap();
                        }
                    });
                    s.spawn(|| {
                        start.wait();
                        for _ in 0..EACH {
                            total.fetch_add(rx.recv().unwrap(), Ordering::Relaxed);
                        }
                    });
                }
            });
            assert_eq!(total.load(Ordering::Relaxed), SIDES * EACH * (EACH - 1) / 2);
        }
    }
}
