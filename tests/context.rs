//! gort::context: cancellation, deadlines, parent-to-child propagation, `done()` as a
//! `select!` arm, and no timer left behind. Under 1, 2 and 4 P's.

mod common;
use common::{assert_success, is_child, run_child};

use gort::context::{self, ContextError};
use gort::{chan, select};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn all() {
    // Background is never done.
    let bg = context::background();
    assert_eq!((bg.err(), bg.deadline(), bg.is_done()), (None, None, false));
    let v = select! {
        recv(bg.done()) -> _ => 0,
        default => 1,
    };
    assert_eq!(v, 1);

    // Cancel: done closes, the reason is Canceled, children and grandchildren follow, a
    // child made afterwards is done at once; cancelling twice is harmless.
    let (parent, cancel) = context::with_cancel(&bg);
    let (child, _c1) = context::with_cancel(&parent);
    let (grandchild, _c2) = context::with_timeout(&child, Duration::from_secs(3600));
    assert!(!grandchild.is_done());
    cancel.cancel();
    cancel.cancel();
    for c in [&parent, &child, &grandchild] {
        assert_eq!(c.err(), Some(ContextError::Canceled));
        assert!(c.done().recv().is_err());
    }
    let (late, _c3) = context::with_cancel(&child);
    assert_eq!(late.err(), Some(ContextError::Canceled));
    // Cancelling a child leaves the parent alone.
    let (p2, _keep) = context::with_cancel(&bg);
    let (c2, cancel2) = context::with_cancel(&p2);
    drop(cancel2); // dropping the handle cancels
    assert_eq!((c2.err(), p2.err()), (Some(ContextError::Canceled), None));

    // Deadlines: DeadlineExceeded, inherited by a child with a later one, and a child's
    // own earlier deadline fires while the parent goes on.
    let t0 = Instant::now();
    let (short, _h1) = context::with_timeout(&bg, Duration::from_millis(10));
    let (longer, _h2) = context::with_timeout(&short, Duration::from_secs(3600));
    assert_eq!(longer.deadline(), short.deadline());
    assert!(longer.done().recv().is_err());
    assert!(t0.elapsed() >= Duration::from_millis(10), "never early");
    assert_eq!(short.err(), Some(ContextError::DeadlineExceeded));
    assert_eq!(longer.err(), Some(ContextError::DeadlineExceeded));
    let (outer, _h3) = context::with_timeout(&bg, Duration::from_secs(3600));
    let (inner, _h4) = context::with_timeout(&outer, Duration::from_millis(2));
    assert!(inner.done().recv().is_err());
    assert_eq!(
        (inner.err(), outer.err()),
        (Some(ContextError::DeadlineExceeded), None)
    );

    // Workers stop on cancel, each exactly once, after draining what they were given.
    let (ctx, cancel) = context::with_cancel(&bg);
    let (work_tx, work_rx) = chan::bounded::<u32>(16);
    let done = Arc::new(AtomicUsize::new(0));
    let processed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..1_000)
        .map(|_| {
            let (ctx, rx, done, processed) = (
                ctx.clone(),
                work_rx.clone(),
                done.clone(),
                processed.clone(),
            );
            gort::go!(move || loop {
                select! {
                    recv(ctx.done()) -> _ => {
                        done.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    recv(rx) -> m => {
                        if m.is_ok() {
                            processed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for i in 0..10_000 {
        work_tx.send(i).unwrap();
    }
    while processed.load(Ordering::SeqCst) < 10_000 {
        gort::yield_now();
    }
    cancel.cancel();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 1_000);
    assert_eq!(processed.load(Ordering::SeqCst), 10_000);

    // A million timeouts cancelled early leave no timer behind.
    for _ in 0..200_000 {
        let (_ctx, cancel) = context::with_timeout(&bg, Duration::from_secs(3600));
        drop(cancel);
    }
    assert!(
        gort::stats().timers < 4_096,
        "{} timers",
        gort::stats().timers
    );
}

#[test]
fn context_cancellation_and_deadlines() {
    if is_child("context_cancellation_and_deadlines") {
        all();
        return;
    }
    for procs in ["1", "2", "4"] {
        assert_success(&run_child(
            "context_cancellation_and_deadlines",
            &[("GORT_MAXPROCS", procs)],
        ));
    }
}
