//! gort::sync under contention, in both worlds; counts checked exactly.
mod common;
use common::*;

use gort::sync::{Barrier, Condvar, Mutex, Once, RwLock, Semaphore, WaitGroup};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn mutex_million() {
    let m = Arc::new(Mutex::new(0u64));
    let hs: Vec<_> = (0..1000)
        .map(|_| {
            let m = m.clone();
            gort::go!(move || {
                for i in 0..1000 {
                    let mut g = m.lock();
                    *g += 1;
                    if i % 100 == 0 {
                        // Hold the lock across a blocking point now and then.
                        gort::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*m.lock(), 1_000_000);
}

#[test]
fn mutex_thousand_gs_thousand_increments() {
    if is_child("mutex_thousand_gs_thousand_increments") {
        mutex_million();
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child(
            "mutex_thousand_gs_thousand_increments",
            &[("GORT_MAXPROCS", procs)],
        );
        assert_success(&o);
    }
}

/// The spinning path and its WOKEN flag (a spinner or a woken waiter tells `unlock` not to
/// wake another): G's and threads lock in short sections, sections held across a yield,
/// and `try_lock`, under 1, 2 and 4 P's. A flag left set with nobody to take the lock would
/// hang a waiter (the deadline catches it); a broken exclusion would tear the pair; every
/// increment is counted.
#[test]
fn mutex_spinners_and_waiters_exclude_and_never_hang() {
    const T: &str = "mutex_spinners_and_waiters_exclude_and_never_hang";
    if is_child(T) {
        let m = Arc::new(Mutex::new((0u64, 0u64)));
        let tries = Arc::new(AtomicUsize::new(0));
        let work = |m: Arc<Mutex<(u64, u64)>>, tries: Arc<AtomicUsize>, id: u64, n: u64| {
            move || {
                for i in 0..n {
                    if (i + id) % 7 == 0 {
                        if let Some(mut g) = m.try_lock() {
                            g.0 += 1;
                            g.1 += 1;
                            tries.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let mut g = m.lock();
                    assert_eq!(g.0, g.1, "two holders at once");
                    g.0 += 1;
                    if (i + id) % 50 == 0 {
                        gort::yield_now();
                    }
                    g.1 += 1;
                }
            }
        };
        let gs: Vec<_> = (0..200)
            .map(|id| gort::go!(work(m.clone(), tries.clone(), id, 2_000)))
            .collect();
        let ts: Vec<_> = (0..2)
            .map(|id| std::thread::spawn(work(m.clone(), tries.clone(), 1_000 + id, 20_000)))
            .collect();
        for g in gs {
            g.join().unwrap();
        }
        for t in ts {
            t.join().unwrap();
        }
        let locked = |n: u64, ids: std::ops::Range<u64>| -> u64 {
            ids.map(|id| (0..n).filter(|i| (i + id) % 7 != 0).count() as u64)
                .sum()
        };
        let want = locked(2_000, 0..200)
            + locked(20_000, 1_000..1_002)
            + tries.load(Ordering::Relaxed) as u64;
        let g = m.lock();
        assert_eq!(*g, (want, want));
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child_with_deadline(T, &[("GORT_MAXPROCS", procs)], Duration::from_secs(60));
        assert_success(&o);
    }
}

#[test]
fn std_thread_and_gs_share_a_mutex() {
    let m = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    let gs: Vec<_> = (0..100)
        .map(|_| {
            let m = m.clone();
            gort::go!(move || {
                for _ in 0..400 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for g in gs {
        g.join().unwrap();
    }
    assert_eq!(*m.lock(), 80_000);
}

#[test]
fn mutex_waiters_do_not_starve() {
    // Hogs re-lock immediately and hold the lock across yields; a latecomer still gets it
    // its share of times (starvation mode hands it over).
    let m = Arc::new(Mutex::new(()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let (m, stop) = (m.clone(), stop.clone());
            gort::go!(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let _g = m.lock();
                    gort::yield_now();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let m2 = m.clone();
    let late = gort::go!(move || {
        for _ in 0..200 {
            let _g = m2.lock();
        }
    });
    late.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    for h in hogs {
        h.join().unwrap();
    }
    assert!(m.try_lock().is_some());
}

#[test]
fn try_lock_and_into_inner() {
    let m = Mutex::new(vec![1]);
    {
        let g = m.lock();
        assert!(m.try_lock().is_none());
        drop(g);
    }
    m.try_lock().unwrap().push(2);
    assert_eq!(m.into_inner(), vec![1, 2]);
}

#[test]
fn condvar_ping_pong_no_lost_wakeup() {
    // 10,000 rounds of strict alternation over one Condvar: a lost wake-up would hang.
    let state = Arc::new((Mutex::new(0u64), Condvar::new()));
    let s2 = state.clone();
    let other = gort::go!(move || {
        let (m, cv) = &*s2;
        for i in 0..10_000u64 {
            let mut g = cv.wait_while(m.lock(), |v| *v != 2 * i + 1);
            *g += 1;
            cv.notify_all();
        }
    });
    let (m, cv) = &*state;
    for i in 0..10_000u64 {
        let mut g = cv.wait_while(m.lock(), |v| *v != 2 * i);
        *g += 1;
        cv.notify_all();
    }
    other.join().unwrap();
    assert_eq!(*m.lock(), 20_000);
}

#[test]
fn condvar_timeout_and_notify_one() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let (m, cv) = &*pair;
    let (g, r) = cv.wait_timeout(m.lock(), Duration::from_millis(5));
    assert!(r.timed_out());
    drop(g);
    // Many waiters; notify_one wakes exactly the count notified.
    let woke = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..10)
        .map(|_| {
            let (p, woke) = (pair.clone(), woke.clone());
            gort::go!(move || {
                let (m, cv) = &*p;
                let mut g = m.lock();
                *g += 1;
                let _g = cv.wait_while(g, |v| *v < 100);
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    loop {
        if *m.lock() == 10 {
            break;
        }
        gort::yield_now();
    }
    *m.lock() = 100;
    for _ in 0..10 {
        cv.notify_one();
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(woke.load(Ordering::SeqCst), 10);
}

#[test]
fn waitgroup_waits_for_all() {
    for _ in 0..100 {
        let wg = WaitGroup::new();
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            wg.add(1);
            let (wg, n) = (wg.clone(), n.clone());
            gort::go!(move || {
                gort::yield_now();
                n.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        // Waited on from a G and from this thread at once.
        let (wg2, n2) = (wg.clone(), n.clone());
        let g = gort::go!(move || {
            wg2.wait();
            n2.load(Ordering::SeqCst)
        });
        wg.wait();
        assert_eq!(n.load(Ordering::SeqCst), 100);
        assert_eq!(g.join().unwrap(), 100);
        assert_eq!(wg.count(), 0);
    }
}

/// One WaitGroup reused for many rounds, the next round's `add` racing the previous round's
/// release: every waiter (G's and the main thread) returns only once its own round's workers
/// have all finished, and every worker's count is seen. Exact counts, 1, 2 and 4 P's.
fn waitgroup_rounds() {
    const ROUNDS: usize = 300;
    const WORKERS: usize = 64;
    const WAITERS: usize = 4;
    let wg = WaitGroup::new();
    let finished: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let mut waiters = Vec::new();
    for r in 0..ROUNDS {
        wg.add(WORKERS);
        for _ in 0..WORKERS {
            let (wg, finished) = (wg.clone(), finished.clone());
            gort::go!(move || {
                if r % 2 == 0 {
                    gort::yield_now();
                }
                finished[r].fetch_add(1, Ordering::Relaxed);
                wg.done();
            });
        }
        for _ in 0..WAITERS {
            let (wg, finished) = (wg.clone(), finished.clone());
            waiters.push(gort::go!(move || {
                wg.wait();
                // Released by this round's last `done` or a later one: never early.
                finished[r].load(Ordering::Relaxed)
            }));
        }
        if r % 2 == 0 {
            wg.wait();
        } else {
            // Not a waiter: go on the moment the count is zero, so that the next round's
            // `add` and waiters race this round's release of its waiters.
            while wg.count() != 0 {
                std::hint::spin_loop();
            }
        }
        assert_eq!(finished[r].load(Ordering::Relaxed), WORKERS, "round {r}");
    }
    for h in waiters {
        assert_eq!(h.join().unwrap(), WORKERS);
    }
    assert_eq!(wg.count(), 0);
    // Fan-out the Go way: add(1) before each detached go!, done in each, wait once.
    let total = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        for _ in 0..5_000 {
            wg.add(1);
            let (wg, total) = (wg.clone(), total.clone());
            drop(gort::go!(move || {
                total.fetch_add(1, Ordering::Relaxed);
                wg.done();
            }));
        }
        wg.wait();
    }
    assert_eq!(total.load(Ordering::Relaxed), 100_000);
}

#[test]
fn waitgroup_rounds_never_release_early() {
    if is_child("waitgroup_rounds_never_release_early") {
        waitgroup_rounds();
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child(
            "waitgroup_rounds_never_release_early",
            &[("GORT_MAXPROCS", procs)],
        );
        assert_success(&o);
    }
}

#[test]
fn waitgroup_add_overflow_panics_clearly() {
    let wg = WaitGroup::new();
    wg.add(u32::MAX as usize);
    let e = std::panic::catch_unwind(|| wg.add(1)).unwrap_err();
    let msg = e.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("overflow"), "{msg}");
    // The count is intact after the refused add.
    assert_eq!(wg.count(), u32::MAX as usize);
}

#[test]
fn waitgroup_done_below_zero_panics_clearly() {
    let wg = WaitGroup::new();
    let e = std::panic::catch_unwind(|| wg.done()).unwrap_err();
    let msg = e.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("below zero"), "{msg}");
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    let l = Arc::new(RwLock::new(0u64));
    let readers_in = Arc::new(AtomicUsize::new(0));
    let max_readers = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..64)
        .map(|i| {
            let (l, rin, maxr) = (l.clone(), readers_in.clone(), max_readers.clone());
            gort::go!(move || {
                for _ in 0..200 {
                    if i % 8 == 0 {
                        let mut w = l.write();
                        assert_eq!(rin.load(Ordering::SeqCst), 0, "writer with readers in");
                        *w += 1;
                        gort::yield_now();
                    } else {
                        let r = l.read();
                        let now = rin.fetch_add(1, Ordering::SeqCst) + 1;
                        maxr.fetch_max(now, Ordering::SeqCst);
                        let _ = *r;
                        gort::yield_now();
                        rin.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*l.read(), 8 * 200);
    // Sharing, deterministically: a second reader gets in while a first holds the lock
    // (from another G), and a writer does not.
    let r1 = l.read();
    let l2 = l.clone();
    let (shared, excluded) = gort::go!(move || (l2.try_read().is_some(), l2.try_write().is_none()))
        .join()
        .unwrap();
    drop(r1);
    assert!(shared && excluded);
    let _ = max_readers.load(Ordering::SeqCst);
}

#[test]
fn semaphore_bounds_holders() {
    let s = Arc::new(Semaphore::new(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..100)
        .map(|_| {
            let (s, inside, max) = (s.clone(), inside.clone(), max.clone());
            gort::go!(move || {
                for _ in 0..20 {
                    let _p = s.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    gort::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(max.load(Ordering::SeqCst) <= 3);
    assert_eq!(s.available_permits(), 3);
    let a = s.acquire();
    let _b = s.acquire();
    let _c = s.acquire();
    assert!(s.acquire_timeout(Duration::from_millis(2)).is_none());
    drop(a);
    assert!(s.acquire_timeout(Duration::from_millis(2)).is_some());
}

/// The semaphore's one-atomic fast paths and its queue, mixed: G's and threads take
/// permits with `acquire`, `try_acquire` and `acquire_timeout` (short timeouts, so waiters
/// leave the queue while permits are handed over), under 1, 2 and 4 P's. Never more holders
/// than permits, every entry counted, every permit back at the end; a permit lost between
/// the count and the queue would hang a waiter (the deadline catches it).
#[test]
fn semaphore_fast_paths_and_queue_under_load() {
    const T: &str = "semaphore_fast_paths_and_queue_under_load";
    if is_child(T) {
        const PERMITS: usize = 3;
        let s = Arc::new(Semaphore::new(PERMITS));
        let inside = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let work = |id: usize, n: usize| {
            let (s, inside, entered) = (s.clone(), inside.clone(), entered.clone());
            move || {
                for i in 0..n {
                    let p = match (i + id) % 3 {
                        0 => Some(s.acquire()),
                        1 => s.try_acquire(),
                        _ => s.acquire_timeout(Duration::from_micros(20)),
                    };
                    if let Some(p) = p {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= PERMITS, "{now} holders of {PERMITS} permits");
                        entered.fetch_add(1, Ordering::SeqCst);
                        if i % 4 == 0 {
                            gort::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(p);
                    }
                }
            }
        };
        let gs: Vec<_> = (0..100).map(|id| gort::go!(work(id, 300))).collect();
        let ts: Vec<_> = (0..2)
            .map(|id| std::thread::spawn(work(100 + id, 3_000)))
            .collect();
        for g in gs {
            g.join().unwrap();
        }
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.available_permits(), PERMITS);
        // Every plain acquire got in.
        assert!(entered.load(Ordering::SeqCst) >= 100 * 100 + 2 * 1_000);
        let held: Vec<_> = (0..PERMITS).map(|_| s.acquire()).collect();
        assert!(s.try_acquire().is_none());
        drop(held);
        assert_eq!(s.available_permits(), PERMITS);
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child_with_deadline(T, &[("GORT_MAXPROCS", procs)], Duration::from_secs(60));
        assert_success(&o);
    }
}

#[test]
fn semaphore_refuses_too_many_permits() {
    let s = Semaphore::new(Semaphore::MAX_PERMITS);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.add_permits(1)));
    let msg = r.expect_err("overflow accepted");
    let msg = msg
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_else(|| msg.downcast_ref::<String>().cloned().unwrap_or_default());
    assert!(msg.contains("MAX_PERMITS"), "{msg}");
    assert_eq!(s.available_permits(), Semaphore::MAX_PERMITS);
    let r = std::panic::catch_unwind(|| Semaphore::new(Semaphore::MAX_PERMITS + 1));
    assert!(r.is_err());
}

#[test]
fn barrier_rounds() {
    let b = Arc::new(Barrier::new(10));
    let count = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..10)
        .map(|_| {
            let (b, count) = (b.clone(), count.clone());
            gort::go!(move || {
                let mut leaders = 0;
                for round in 0..100 {
                    count.fetch_add(1, Ordering::SeqCst);
                    if b.wait().is_leader() {
                        leaders += 1;
                    }
                    // Everyone has arrived for this round before anyone leaves it.
                    assert!(count.load(Ordering::SeqCst) >= (round + 1) * 10);
                    b.wait();
                }
                leaders
            })
        })
        .collect();
    let leaders: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(leaders, 100);
}

#[test]
fn once_runs_once_for_concurrent_callers() {
    let once = Arc::new(Once::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..100)
        .map(|_| {
            let (once, runs) = (once.clone(), runs.clone());
            gort::go!(move || {
                once.call_once(|| {
                    gort::yield_now();
                    runs.fetch_add(1, Ordering::SeqCst);
                });
                // Whoever returns sees the effect.
                runs.load(Ordering::SeqCst)
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 1);
    }
    assert!(once.is_completed());
}

/// Go's bounded-parallelism pattern: acquire in the spawner, release in the green thread
/// (an owned permit moves into it); at most `LIMIT` run at once, every one runs, and all
/// permits come back. Under 1, 2 and 4 P's.
fn owned_permits_bound_parallelism() {
    const LIMIT: usize = 8;
    const N: usize = 10_000;
    let sem = Arc::new(Semaphore::new(LIMIT));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..N)
        .map(|i| {
            let permit = if i % 2 == 0 {
                sem.clone().acquire_owned()
            } else {
                sem.clone().acquire_many_owned(1)
            };
            assert_eq!(permit.num_permits(), 1);
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            gort::go!(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                gort::yield_now();
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                drop(permit);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), N);
    assert!(
        peak.load(Ordering::SeqCst) <= LIMIT,
        "{} ran at once",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(sem.available_permits(), LIMIT);
    // try and timeout forms, owned.
    let all = sem.clone().try_acquire_many_owned(LIMIT).unwrap();
    assert!(sem.clone().try_acquire_owned().is_none());
    assert!(sem
        .clone()
        .acquire_owned_timeout(Duration::from_millis(2))
        .is_none());
    assert!(Arc::ptr_eq(all.semaphore(), &sem));
    drop(all);
    let p = sem
        .clone()
        .acquire_many_owned_timeout(3, Duration::from_secs(10))
        .unwrap();
    assert_eq!((p.num_permits(), sem.available_permits()), (3, LIMIT - 3));
    p.forget();
    assert_eq!(sem.available_permits(), LIMIT - 3);
}

#[test]
fn semaphore_owned_permits() {
    if is_child("semaphore_owned_permits") {
        owned_permits_bound_parallelism();
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child("semaphore_owned_permits", &[("GORT_MAXPROCS", procs)]);
        assert_success(&o);
    }
}

/// Several permits at once: a waiter takes what is free and waits for the rest, holds back
/// those behind it (FIFO), and gives back what it got if it times out.
#[test]
fn semaphore_many_permits() {
    let sem = Arc::new(Semaphore::new(3));
    let two = sem.acquire_many(2);
    assert_eq!(sem.available_permits(), 1);
    // Times out holding one of the two it needs: gives it back.
    assert!(sem
        .acquire_many_timeout(2, Duration::from_millis(5))
        .is_none());
    assert_eq!(sem.available_permits(), 1);
    assert!(sem.try_acquire_many(2).is_none());
    // A green thread queues for 2: it takes the free one at once (so none is left), and
    // gets the second from the next release.
    let (tx, rx) = gort::chan::bounded::<()>(0);
    let s = sem.clone();
    let a = gort::go!(move || {
        let p = s.acquire_many(2);
        tx.send(()).unwrap();
        p.num_permits()
    });
    while sem.available_permits() != 0 {
        gort::yield_now();
    }
    // Queued: one free permit would not overtake it.
    assert!(sem.try_acquire().is_none());
    drop(two);
    rx.recv().unwrap();
    assert_eq!(a.join().unwrap(), 2);
    assert_eq!(sem.available_permits(), 3);
    assert_eq!(sem.acquire_many(0).num_permits(), 0);
    assert_eq!(sem.acquire_many(3).num_permits(), 3);
    assert_eq!(sem.available_permits(), 3);
}

/// Many waiters that time out leave cheaply and lose no permit: 2,000 green threads wait
/// with random timeouts on a semaphore whose permits keep circulating; every permit is
/// accounted for at the end. Under 1, 2 and 4 P's.
fn semaphore_timeouts_under_load() {
    const PERMITS: usize = 4;
    let sem = Arc::new(Semaphore::new(PERMITS));
    let got = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..2_000u64)
        .map(|i| {
            let (sem, got) = (sem.clone(), got.clone());
            gort::go!(move || {
                let n = 1 + (i % 3) as usize;
                let t = Duration::from_micros(50 + (i * 7919) % 2_000);
                let p = if i % 2 == 0 {
                    sem.acquire_many_timeout(n, t).map(|p| p.num_permits())
                } else {
                    sem.clone()
                        .acquire_many_owned_timeout(n, t)
                        .map(|p| p.num_permits())
                };
                if p.is_some() {
                    got.fetch_add(1, Ordering::SeqCst);
                }
                gort::yield_now();
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(got.load(Ordering::SeqCst) > 0);
    assert_eq!(sem.available_permits(), PERMITS);
    // And the queue full of cancelled waiters does not hold back the next acquirer.
    let blocked = Semaphore::new(0);
    let hs: Vec<_> = {
        let blocked = Arc::new(blocked);
        let hs: Vec<_> = (0..10_000)
            .map(|_| {
                let b = blocked.clone();
                gort::go!(move || b.acquire_timeout(Duration::from_millis(1)).is_none())
            })
            .collect();
        let r: Vec<bool> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        blocked.add_permits(2);
        assert_eq!(blocked.available_permits(), 2);
        assert!(blocked.try_acquire_many(2).is_some());
        r
    };
    assert!(hs.into_iter().all(|timed_out| timed_out));
}

#[test]
fn semaphore_timeouts_lose_no_permit() {
    if is_child("semaphore_timeouts_lose_no_permit") {
        semaphore_timeouts_under_load();
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child(
            "semaphore_timeouts_lose_no_permit",
            &[("GORT_MAXPROCS", procs)],
        );
        assert_success(&o);
    }
}

/// OnceLock / LazyLock under contention: the initialiser runs once, waiters park (a
/// slow initialiser that parks does not hold anyone's P), everyone sees the one value; a
/// panicking initialiser leaves the cell empty and a waiter initialises it instead.
fn once_lock_contention() {
    use gort::sync::{LazyLock, OnceLock};
    let cell = Arc::new(OnceLock::<usize>::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..1_000)
        .map(|i| {
            let (cell, runs) = (cell.clone(), runs.clone());
            gort::go!(move || {
                *cell.get_or_init(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gort::sleep(Duration::from_millis(5)); // parks: the others wait parked
                    1_000 + i
                })
            })
        })
        .collect();
    let vals: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(vals.iter().all(|v| *v == vals[0]));
    assert_eq!(cell.get(), Some(&vals[0]));
    assert_eq!(cell.set(7), Err(7));
    // From OS threads too.
    let c2 = Arc::new(OnceLock::<String>::new());
    let ts: Vec<_> = (0..8)
        .map(|_| {
            let c2 = c2.clone();
            std::thread::spawn(move || c2.get_or_init(|| "x".repeat(3)).clone())
        })
        .collect();
    assert!(ts.into_iter().all(|t| t.join().unwrap() == "xxx"));
    // A panicking initialiser: the cell stays empty; the next caller initialises it.
    let c3 = Arc::new(OnceLock::<u32>::new());
    let c = c3.clone();
    let r = gort::go!(move || *c.get_or_init(|| panic!("once-lock-quiet"))).join();
    assert!(r.is_err());
    assert!(c3.get().is_none());
    assert_eq!(*c3.get_or_init(|| 9), 9);
    let mut owned = Arc::try_unwrap(c3).unwrap();
    assert_eq!(owned.take(), Some(9));
    assert!(owned.get().is_none());
    // LazyLock: initialised once, by whichever green thread comes first.
    static LAZY_RUNS: AtomicUsize = AtomicUsize::new(0);
    static LAZY: LazyLock<Vec<u32>> = LazyLock::new(|| {
        LAZY_RUNS.fetch_add(1, Ordering::SeqCst);
        gort::yield_now();
        (0..100).collect()
    });
    let hs: Vec<_> = (0..500).map(|i| gort::go!(move || LAZY[i % 100])).collect();
    let sum: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 5 * (0..100).sum::<u32>());
    assert_eq!(LAZY_RUNS.load(Ordering::SeqCst), 1);
}

#[test]
fn once_lock_and_lazy_lock() {
    if is_child("once_lock_and_lazy_lock") {
        std::panic::set_hook(Box::new(|_| {}));
        once_lock_contention();
        return;
    }
    for procs in ["1", "2", "4"] {
        let o = run_child("once_lock_and_lazy_lock", &[("GORT_MAXPROCS", procs)]);
        assert_success(&o);
    }
}
