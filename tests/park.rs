//! Park/unpark through join: G's and OS threads waiting on G's, under stress; nothing lost,
//! nothing woken twice.

mod common;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn gs_join_gs_spawned_elsewhere() {
    // Handles made by the main thread, joined by other G's while the joinees run.
    let hs: Vec<_> = (0..20_000u64).map(|i| gort::go!(move || i)).collect();
    let mut chunks = Vec::new();
    let mut it = hs.into_iter();
    loop {
        let chunk: Vec<_> = it.by_ref().take(100).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(gort::go!(move || chunk
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<u64>()));
    }
    let sum: u64 = chunks.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 20_000 * 19_999 / 2);
}

#[test]
fn os_threads_join_gs() {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..10_000u64)
                    .map(|i| gort::go!(move || t * 10_000 + i))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let sum: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(sum, 80_000 * 79_999 / 2);
}

#[test]
fn join_races_completion() {
    // The joinee finishes just as the joiner parks, many times over: each join returns the
    // right value exactly once, and no joiner is left parked.
    let done = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..2_000u64)
        .map(|i| {
            let done = done.clone();
            gort::go!(move || {
                for j in 0..50u64 {
                    let h = gort::go!(move || i * 100 + j);
                    if j % 2 == 0 {
                        gort::yield_now();
                    }
                    assert_eq!(h.join().unwrap(), i * 100 + j);
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 2_000);
}

#[test]
fn deep_join_chain() {
    // Each G joins the one before it; the first waits on a gate. All park, then unwind.
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let mut last = gort::go!(move || {
        while !o.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        0u64
    });
    for _ in 0..10_000 {
        let prev = last;
        last = gort::go!(move || prev.join().unwrap() + 1);
    }
    open.store(true, Ordering::SeqCst);
    assert_eq!(last.join().unwrap(), 10_000);
}

#[test]
fn is_finished_tracks_completion() {
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let h = gort::go!(move || {
        while !o.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        5
    });
    assert!(!h.is_finished());
    open.store(true, Ordering::SeqCst);
    while !h.is_finished() {
        std::thread::yield_now();
    }
    assert_eq!(h.join().unwrap(), 5);
}

#[test]
fn builder_rejects_bad_stack_sizes() {
    for bad in [0usize, 1024, 8 * 1024, (1 << 30) + 1, usize::MAX] {
        let e = gort::Builder::new()
            .stack_size(bad)
            .spawn(|| ())
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("stack size"), "{e}");
    }
    let e = gort::Builder::new()
        .name("a\0b".into())
        .spawn(|| ())
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // Sizes that are fine, rounded to pages.
    for ok in [16 * 1024, 100_000, 1 << 20] {
        let h = gort::Builder::new()
            .stack_size(ok)
            .spawn(move || ok)
            .unwrap();
        assert_eq!(h.join().unwrap(), ok);
    }
}

#[test]
fn yield_now_outside_runtime_is_harmless() {
    gort::yield_now();
    assert!(gort::max_procs() >= 1);
}

#[test]
fn ids_are_unique() {
    let hs: Vec<_> = (0..10_000).map(|_| gort::go!(|| ())).collect();
    let ids: std::collections::HashSet<u64> = hs.iter().map(|h| h.id()).collect();
    assert_eq!(ids.len(), 10_000);
    assert!(!ids.contains(&0));
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn wakeups_from_outside_are_never_lost() {
    // Each spawn from a plain thread finds the M's idle or about to idle; a lost wake-up
    // would leave the join hanging. Several threads at once, many rounds.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut sum = 0;
                for i in 0..20_000u64 {
                    sum += gort::go!(move || t + i).join().unwrap();
                }
                sum
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 4 * (20_000 * 19_999 / 2) + 20_000 * (1 + 2 + 3));
}

#[test]
fn wakeups_between_gs_are_never_lost() {
    // A G hands work to a fresh G and waits for it, over and over, from many G's at once:
    // every readied G must run although M's keep going idle and waking.
    let hs: Vec<_> = (0..64u64)
        .map(|k| {
            gort::go!(move || {
                let mut acc = 0;
                for i in 0..2_000u64 {
                    acc += gort::go!(move || gort::go!(move || k ^ i).join().unwrap())
                        .join()
                        .unwrap();
                }
                acc
            })
        })
        .collect();
    let got: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let want: u64 = (0..64u64)
        .map(|k| (0..2_000u64).map(|i| k ^ i).sum::<u64>())
        .sum();
    assert_eq!(got, want);
}

#[test]
fn public_park_unpark_passes_a_token_around_a_ring() {
    // 60 G's and 4 OS threads in a ring; each waits with `gort::park` until its mailbox
    // holds the token, then passes it on with the next one's `Unparker`. A lost wake-up
    // hangs the ring; a duplicated token breaks the exact count.
    use gort::Unparker;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;
    const N: usize = 64;
    const LAPS: u64 = 500;
    let mail: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let unparkers: Arc<Mutex<Vec<Option<Unparker>>>> = Arc::new(Mutex::new(vec![None; N]));
    let registered = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(AtomicBool::new(false));
    let starter = Unparker::current();
    let mut gs = Vec::new();
    let mut threads = Vec::new();
    for i in 0..N {
        let (mail, unparkers, registered, start, starter) = (
            mail.clone(),
            unparkers.clone(),
            registered.clone(),
            start.clone(),
            starter.clone(),
        );
        let body = move || {
            unparkers.lock().unwrap()[i] = Some(Unparker::current());
            registered.fetch_add(1, Ordering::SeqCst);
            starter.unpark();
            while !start.load(Ordering::Acquire) {
                gort::park();
            }
            let next = unparkers.lock().unwrap()[(i + 1) % N].clone().unwrap();
            let mut seen = 0u64;
            loop {
                let v = loop {
                    // Acquire: pairs with the sender's Release store.
                    let v = mail[i].swap(0, Ordering::Acquire);
                    if v != 0 {
                        break v;
                    }
                    gort::park();
                };
                seen += 1;
                if v < LAPS * N as u64 {
                    mail[(i + 1) % N].store(v + 1, Ordering::Release);
                    next.unpark();
                }
                if seen == LAPS {
                    return seen;
                }
            }
        };
        if i % 16 == 15 {
            threads.push(std::thread::spawn(body));
        } else {
            gs.push(gort::go!(body));
        }
    }
    while registered.load(Ordering::SeqCst) < N {
        gort::park();
    }
    start.store(true, Ordering::Release);
    for u in unparkers.lock().unwrap().iter() {
        u.as_ref().unwrap().unpark();
    }
    mail[0].store(1, Ordering::Release);
    unparkers.lock().unwrap()[0].as_ref().unwrap().unpark();
    let mut total = 0;
    for h in gs {
        total += h.join().unwrap();
    }
    for t in threads {
        total += t.join().unwrap();
    }
    assert_eq!(total, LAPS * N as u64);
}

#[test]
fn park_timeout_returns_and_unparking_a_finished_g_is_harmless() {
    let h = gort::go!(|| {
        // No one unparks: each call returns by its timeout (or spuriously).
        for _ in 0..3 {
            gort::park_timeout(std::time::Duration::from_millis(1));
        }
        gort::Unparker::current()
    });
    let u = h.join().unwrap();
    u.unpark();
    u.unpark();
    assert!(format!("{u:?}").starts_with("Unparker::G"));
    assert!(!gort::is_green_thread());
    assert!(gort::go!(gort::is_green_thread).join().unwrap());
}

/// An `unpark` that finds the G already holding a wake-up token (left by an earlier waker,
/// say the late completer of its previous wait) must still be ordered with the G taking
/// that token: the G then either sees what the new waker published or gets queued by it.
/// Found as a hang: `select!`s sending and receiving on one rendezvous channel leave such
/// tokens all the time, and one in about a million waits parked for good with its
/// operation completed (the completer's check of the state word read NOTIFIED while its
/// "done" store still sat in its core's store buffer). Here in child processes with more P's
/// than cores, three groups of six G's pairing up through `select!` over and over; on the
/// code before the fix most runs hung within a few thousand groups (the child's deadlock
/// report ends it, or the deadline below).
#[test]
fn a_stale_wake_up_token_never_hides_a_new_one() {
    const TEST: &str = "a_stale_wake_up_token_never_hides_a_new_one";
    if common::is_child(TEST) {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                gort::go!(|| {
                    for _ in 0..3_000 {
                        select_pairs_once();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        return;
    }
    for procs in ["2", "4"] {
        let o = common::run_child_with_deadline(
            TEST,
            &[("GORT_MAXPROCS", procs)],
            std::time::Duration::from_secs(60),
        );
        common::assert_success(&o);
    }
}

/// Six G's offer to send or to receive on one rendezvous channel in each `select!` until
/// each has done 300 exchanges; the last one left is let go by closing `stop`.
fn select_pairs_once() {
    use gort::{chan, select};
    const THREADS: usize = 6;
    const ROUNDS: usize = 300;
    let (tx, rx) = chan::bounded::<usize>(0);
    let (stop_tx, stop_rx) = chan::bounded::<()>(0);
    let (fin_tx, fin_rx) = chan::unbounded::<()>();
    let sent = AtomicUsize::new(0);
    let received = AtomicUsize::new(0);
    gort::scope(|s| {
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
        for _ in 0..THREADS - 1 {
            fin_rx.recv().unwrap();
        }
        drop(stop_tx);
    });
    assert_eq!(
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed)
    );
}
