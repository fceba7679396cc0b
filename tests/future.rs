//! block_on and JoinHandle as a future: futures woken from another green thread, from an
//! OS thread, spuriously and at once; joins awaited, abandoned, and awaited by thousands.
//! Under 1, 2 and 4 P's.

mod common;
use common::{assert_success, is_child, run_child};

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A one-shot channel future, runtime-agnostic (std only).
#[derive(Default)]
struct Shot {
    value: Mutex<Option<u64>>,
    waker: Mutex<Option<Waker>>,
    polls: AtomicUsize,
}

struct ShotRx(Arc<Shot>);

impl Future for ShotRx {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        self.0.polls.fetch_add(1, Ordering::SeqCst);
        if let Some(v) = *self.0.value.lock().unwrap() {
            return Poll::Ready(v);
        }
        *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
        // Re-check after registering: a send in between woke nobody.
        match *self.0.value.lock().unwrap() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

fn send(s: &Shot, v: u64) {
    *s.value.lock().unwrap() = Some(v);
    if let Some(w) = s.waker.lock().unwrap().take() {
        w.wake();
    }
}

/// Pending `n` times, waking itself at once each time (a spurious-looking wake-up pattern).
struct SelfWaking(u32);

impl Future for SelfWaking {
    type Output = u32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        if self.0 == 0 {
            return Poll::Ready(7);
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        cx.waker().wake_by_ref(); // twice: must not cost two polls later
        Poll::Pending
    }
}

fn futures_all() {
    for from_g in [false, true] {
        let run = move || {
            // Woken from another green thread.
            let s = Arc::new(Shot::default());
            let s2 = s.clone();
            let h = gort::go!(move || {
                gort::yield_now();
                send(&s2, 5);
            });
            assert_eq!(gort::block_on(ShotRx(s.clone())), 5);
            h.join().unwrap();
            // Woken from an OS thread.
            let s = Arc::new(Shot::default());
            let s2 = s.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(2));
                send(&s2, 6);
            });
            assert_eq!(gort::block_on(ShotRx(s.clone())), 6);
            t.join().unwrap();
            // Woken at once, inside poll, several times.
            assert_eq!(gort::block_on(SelfWaking(100)), 7);
            // An async block awaiting green threads.
            let hs: Vec<_> = (0..10u64).map(|i| gort::go!(move || i * i)).collect();
            let total = gort::block_on(async move {
                let mut t = 0;
                for h in hs {
                    t += h.await.unwrap();
                }
                t
            });
            assert_eq!(total, 285);
            // A panic comes through the await.
            let h = gort::go!(|| -> u64 { std::panic::panic_any("future-quiet") });
            assert!(gort::block_on(async { h.await }).is_err());
        };
        if from_g {
            gort::go!(run).join().unwrap();
        } else {
            run();
        }
    }

    // An awaited join abandoned after it registered: the green thread finishes later and
    // its result is dropped once, nothing hangs.
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = gort::chan::bounded::<()>(0);
    let d = drops.clone();
    let h = gort::go!(move || {
        rx.recv().unwrap();
        CountDrop(d)
    });
    let mut fut = Box::pin(std::future::IntoFuture::into_future(h));
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert!(fut.as_mut().poll(&mut cx).is_pending()); // re-registers
    drop(fut);
    tx.send(()).unwrap();
    while drops.load(Ordering::SeqCst) == 0 {
        gort::yield_now();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // Thousands of green threads, each awaiting another's join through block_on.
    let sum = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..2_000usize)
        .map(|i| {
            let sum = sum.clone();
            gort::go!(move || {
                let inner = gort::go!(move || {
                    gort::yield_now();
                    i
                });
                let v = gort::block_on(async { inner.await.unwrap() });
                sum.fetch_add(v, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(sum.load(Ordering::SeqCst), 2_000 * 1_999 / 2);
}

#[test]
fn block_on_and_awaited_joins() {
    if is_child("block_on_and_awaited_joins") {
        std::panic::set_hook(Box::new(|_| {}));
        futures_all();
        return;
    }
    for procs in ["1", "2", "4"] {
        assert_success(&run_child(
            "block_on_and_awaited_joins",
            &[("GORT_MAXPROCS", procs)],
        ));
    }
}
