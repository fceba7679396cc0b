//! Green-local storage: values follow their green thread across OS threads, start fresh in
//! every G (recycled ones too), are dropped when the G ends (a panicking `Drop` contained),
//! and fall back to per-thread values off the runtime.
mod common;
use common::*;

use gort::green_local;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

green_local! {
    static ID: Cell<u64> = Cell::new(0);
    static LOG: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

fn migrate_and_check(procs_child: bool) {
    const GS: u64 = 200;
    const ROUNDS: usize = 50;
    let moved = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (1..=GS)
        .map(|id| {
            let moved = moved.clone();
            gort::go!(move || {
                assert_eq!(ID.get(), 0, "a new G starts with the initial value");
                ID.set(id);
                let mut thread = std::thread::current().id();
                for r in 0..ROUNDS {
                    if r % 10 == 0 {
                        gort::time::sleep(std::time::Duration::from_micros(50));
                    } else {
                        gort::yield_now();
                    }
                    let now = std::thread::current().id();
                    if now != thread {
                        moved.fetch_add(1, Ordering::Relaxed);
                        thread = now;
                    }
                    assert_eq!(ID.get(), id, "G {id}'s value after a park");
                    LOG.with_borrow_mut(|l| l.push(id));
                }
                LOG.with_borrow(|l| l.len() == ROUNDS && l.iter().all(|&x| x == id))
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap(), "a G saw another G's log entries");
    }
    if procs_child {
        println!("migrations: {}", moved.load(Ordering::Relaxed));
    }
}

#[test]
fn values_follow_their_green_thread() {
    migrate_and_check(false);
}

#[test]
fn values_follow_their_green_thread_on_four_ps() {
    const NAME: &str = "values_follow_their_green_thread_on_four_ps";
    if is_child(NAME) {
        migrate_and_check(true);
        return;
    }
    let out = run_child(NAME, &[("GORT_MAXPROCS", "4")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn recycled_green_threads_start_clean() {
    green_local! {
        static USED: Cell<bool> = const { Cell::new(false) };
    }
    // One after another: each G's stack and struct are recycled for the next.
    for _ in 0..2_000 {
        let h = gort::go!(|| {
            let fresh = !USED.get();
            USED.set(true);
            fresh
        });
        assert!(h.join().unwrap());
    }
}

#[test]
fn initialiser_runs_once_per_green_thread() {
    static INITS: AtomicUsize = AtomicUsize::new(0);
    green_local! {
        static V: u32 = { INITS.fetch_add(1, Ordering::SeqCst); 7 };
    }
    let hs: Vec<_> = (0..100)
        .map(|_| {
            gort::go!(|| {
                for _ in 0..10 {
                    assert_eq!(V.with(|v| *v), 7);
                    gort::yield_now();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(INITS.load(Ordering::SeqCst), 100);
}

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn values_are_dropped_when_the_green_thread_ends() {
    green_local! {
        static HELD: RefCell<Option<Counted>> = const { RefCell::new(None) };
    }
    let drops = Arc::new(AtomicUsize::new(0));
    for i in 0..500 {
        let d = drops.clone();
        let h = gort::go!(move || HELD.set(Some(Counted(d))));
        h.join().unwrap();
        // Dropped before `join` returned, as std drops thread-locals before its join.
        assert_eq!(drops.load(Ordering::SeqCst), i + 1);
    }
    // A G that never touched the key drops nothing.
    gort::go!(|| ()).join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 500);
}

#[test]
fn a_panicking_drop_is_contained_and_the_others_still_drop() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("green-local bomb");
        }
    }
    green_local! {
        static BOMB: RefCell<Option<Bomb>> = const { RefCell::new(None) };
        static AFTER: RefCell<Option<Counted>> = const { RefCell::new(None) };
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let procs = gort::max_procs();
    // More panicking G's than P's and M's: were any of them lost, the runtime would stall.
    for _ in 0..4 * procs {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let d = drops.clone();
                gort::go!(move || {
                    AFTER.set(Some(Counted(d)));
                    BOMB.set(Some(Bomb));
                    i
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(
                h.join().unwrap(),
                i,
                "the closure's result survives the drop"
            );
        }
    }
    assert_eq!(drops.load(Ordering::SeqCst), 4 * procs * 50);
    // The runtime still runs green threads on every P.
    let n = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..1_000)
        .map(|_| {
            let n = n.clone();
            gort::go!(move || {
                gort::yield_now();
                n.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(n.load(Ordering::SeqCst), 1_000);
}

#[test]
fn a_drop_may_use_other_green_locals() {
    green_local! {
        static SECOND: RefCell<Option<Counted>> = const { RefCell::new(None) };
    }
    struct UsesSecond(Arc<AtomicUsize>);
    impl Drop for UsesSecond {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            // A new value made during the G's teardown: dropped too.
            SECOND.set(Some(Counted(self.0.clone())));
        }
    }
    green_local! {
        static FIRST: RefCell<Option<UsesSecond>> = const { RefCell::new(None) };
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    gort::go!(move || FIRST.set(Some(UsesSecond(d))))
        .join()
        .unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn nested_access_to_several_keys() {
    green_local! {
        static A: RefCell<Vec<u32>> = RefCell::new(vec![1]);
        static B: RefCell<Vec<u32>> = RefCell::new(vec![2]);
        static C: Cell<u32> = const { Cell::new(3) };
    }
    let h = gort::go!(|| {
        A.with_borrow(|a| {
            // Making B and C while A is borrowed: A's value stays where it is.
            B.with_borrow_mut(|b| b.push(C.replace(4)));
            a.clone()
        })
    });
    assert_eq!(h.join().unwrap(), vec![1]);
}

#[test]
fn plain_threads_get_their_own_values() {
    let hs: Vec<_> = (1..=4u64)
        .map(|id| {
            std::thread::spawn(move || {
                assert_eq!(ID.get(), 0);
                ID.set(id);
                std::thread::yield_now();
                ID.get()
            })
        })
        .collect();
    let got: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4]);
    // A G on the runtime does not see a plain thread's value.
    ID.set(99);
    assert_eq!(gort::go!(|| ID.get()).join().unwrap(), 0);
    assert_eq!(ID.get(), 99);
}

#[test]
fn the_value_is_the_same_inside_blocking() {
    let h = gort::go!(|| {
        ID.set(42);
        let inside = gort::blocking(|| ID.get());
        (inside, ID.get())
    });
    assert_eq!(h.join().unwrap(), (42, 42));
}
