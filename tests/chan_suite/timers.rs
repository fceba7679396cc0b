//! `time::after`, `time::tick` and `chan::never` as channels.

use super::*;
use gort::chan::{self, RecvTimeoutError, TryRecvError};
use gort::select;
use gort::time::{after, tick};
use std::time::Instant;

suite! {
    fn after_delivers_one_instant_no_earlier_than_asked() {
        let start = Instant::now();
        let rx = after(ms(3));
        let t = rx.recv().unwrap();
        assert!(t >= start + ms(3));
        // Once only, and the channel stays open (Go's timer channel never closes).
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.recv_timeout(ms(3)), Err(RecvTimeoutError::Timeout));
        assert!(!rx.is_closed());
    }

    fn after_holds_one_message() {
        // Not due during the test (a short timer could fire before `len` on a loaded
        // machine).
        let rx = after(FOREVER);
        assert_eq!(rx.capacity(), Some(1));
        assert_eq!(rx.len(), 0);
        let rx = after(ms(1));
        // Wait until it has fired without consuming it.
        while rx.is_empty() {
            gort::time::sleep(ms(1));
        }
        assert_eq!(rx.len(), 1);
        assert!(rx.is_full());
        rx.try_recv().unwrap();
        assert!(rx.is_empty());
    }

    fn after_zero_is_ready_at_once() {
        let rx = after(Duration::ZERO);
        assert_eq!(rx.len(), 1);
        assert!(rx.try_recv().is_ok());
    }

    fn after_far_away_does_not_fire() {
        let rx = after(FOREVER);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.recv_timeout(ms(2)), Err(RecvTimeoutError::Timeout));
        // An overflowing deadline never fires either.
        let rx = after(Duration::MAX);
        assert_eq!(rx.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
    }

    fn clones_of_an_after_race_for_one_message() {
        const THREADS: usize = 8;
        let rx = after(ms(2));
        let (won_tx, won_rx) = chan::unbounded::<()>();
        let (stop_tx, stop_rx) = chan::bounded::<()>(0);
        scope(|s| {
            for _ in 0..THREADS {
                let (rx, stop_rx, won_tx) = (rx.clone(), stop_rx.clone(), won_tx.clone());
                s.spawn(move || {
                    select! {
                        recv(rx) -> m => { m.unwrap(); won_tx.send(()).unwrap(); }
                        recv(stop_rx) -> _ => {}
                    }
                });
            }
            won_rx.recv().unwrap();
            // The others are released without a message.
            drop(stop_tx);
        });
        drop(won_tx);
        assert_eq!(won_rx.iter().count(), 0, "two clones got the one message");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    fn many_afters_in_flight() {
        // 1,000 timers with scattered deadlines, each fires exactly once.
        let rxs: Vec<_> = (0..1_000u64).map(|i| after(Duration::from_micros(i * 7 % 3_000))).collect();
        let mut n = 0;
        for rx in &rxs {
            rx.recv().unwrap();
            n += 1;
        }
        assert_eq!(n, 1_000);
        assert!(rxs.iter().all(|rx| rx.is_empty()));
    }

    fn after_in_a_loop_with_work() {
        let (tx, rx) = chan::bounded::<u32>(0);
        scope(|s| {
            s.spawn(move || {
                for i in 0..20 {
                    tx.send(i).unwrap();
                }
            });
            let mut got = 0;
            let mut timeouts = 0;
            loop {
                select! {
                    recv(rx) -> m => match m {
                        Ok(v) => { assert_eq!(v, got); got += 1; }
                        Err(_) => break,
                    },
                    recv(after(FOREVER)) -> _ => timeouts += 1,
                }
            }
            assert_eq!((got, timeouts), (20, 0));
        });
    }

    fn tick_delivers_increasing_instants() {
        let start = Instant::now();
        let rx = tick(ms(1));
        let mut last = start;
        for _ in 0..5 {
            let t = rx.recv().unwrap();
            assert!(t > last);
            last = t;
        }
        assert!(last >= start + ms(5));
    }

    fn tick_keeps_one_and_drops_the_missed() {
        let rx = tick(ms(1));
        assert_eq!(rx.capacity(), Some(1));
        while rx.is_empty() {
            gort::time::sleep(ms(1));
        }
        // Several more periods pass: still one tick waiting, the others were dropped.
        gort::time::sleep(ms(5));
        assert_eq!(rx.len(), 1);
        rx.try_recv().unwrap();
        // And ticking goes on.
        rx.recv().unwrap();
    }

    fn tick_and_after_arms_together() {
        let t = tick(ms(1));
        let far = after(FOREVER);
        let mut ticks = 0;
        while ticks < 3 {
            select! {
                recv(t) -> m => { m.unwrap(); ticks += 1; }
                recv(far) -> _ => panic!("an hour has not passed"),
            }
        }
    }

    #[should_panic(expected = "non-zero")]
    fn tick_zero_is_refused() {
        let _ = tick(Duration::ZERO);
    }

    fn never_is_never_ready() {
        let rx = chan::never::<u32>();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.recv_timeout(ms(2)), Err(RecvTimeoutError::Timeout));
        assert_eq!(rx.len(), 0);
        assert!(rx.is_empty());
        assert_eq!(rx.capacity(), Some(0));
        assert!(!rx.is_closed());
        assert!(rx.same_channel(&chan::never()));
        assert!(rx.same_channel(&rx.clone()));
    }

    fn never_in_a_select() {
        let r = select! {
            recv(chan::never::<u32>()) -> _ => "never",
            default(ms(2)) => "timeout",
        };
        assert_eq!(r, "timeout");
        let r = select! {
            recv(chan::never::<u32>()) -> _ => "never",
            recv(after(ms(1))) -> _ => "after",
        };
        assert_eq!(r, "after");
    }

    fn never_switches_a_ticker_off() {
        let t = tick(ms(1));
        let mut ticks = 0;
        let mut source = Some(&t);
        while source.is_some() {
            select! {
                recv(source.map_or(&chan::never(), |t| t)) -> _ => {
                    ticks += 1;
                    if ticks == 3 {
                        source = None;
                    }
                }
            }
        }
        // Switched off: the arm is never ready again, though the ticker ticks on.
        select! {
            recv(source.map_or(&chan::never(), |t| t)) -> _ => panic!("switched off"),
            default(ms(3)) => {}
        }
        assert_eq!(ticks, 3);
        assert!(t.recv().is_ok());
    }
}
