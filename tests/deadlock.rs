//! The deadlock report: Go's classic deadlocks are reported (exit status 2, the message and
//! the dump), and correct programs with idle periods never are. Every program runs in a
//! child process of its own. This test has its own `main` (`harness = false` in Cargo.toml):
//! under libtest the harness's main thread waits in std for the test thread, which, being a
//! plain thread that could still wake a green thread, rightly keeps the report silent.
mod common;
use common::*;

use gort::chan;
use gort::sync::{Mutex, WaitGroup};
use std::sync::Arc;
use std::time::Duration;

const MSG: &str = "gort: all green threads are asleep - deadlock!";

fn expect_deadlock(name: &str) -> String {
    let o = run_child_with_deadline(name, &[], Duration::from_secs(60));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{:?}\n{err}", o.status);
    assert!(err.contains(MSG), "{err}");
    err
}

fn main_joins_a_green_thread_that_waits_on_a_channel_nobody_sends_on() {
    const NAME: &str = "main_joins_a_green_thread_that_waits_on_a_channel_nobody_sends_on";
    if is_child(NAME) {
        let (tx, rx) = chan::bounded::<u32>(0);
        let h = gort::go!(move || rx.recv());
        let _ = h.join();
        drop(tx);
        unreachable!("the join never returns");
    }
    let err = expect_deadlock(NAME);
    assert!(err.contains("[chan receive, "), "{err}");
    assert!(err.contains("spawned at tests/deadlock.rs:"), "{err}");
}

fn two_green_threads_lock_two_mutexes_in_opposite_order() {
    const NAME: &str = "two_green_threads_lock_two_mutexes_in_opposite_order";
    if is_child(NAME) {
        let a = Arc::new(Mutex::new(()));
        let b = Arc::new(Mutex::new(()));
        let both = Arc::new(gort::sync::Barrier::new(2));
        let (a1, b1, w1) = (a.clone(), b.clone(), both.clone());
        let h1 = gort::go!(move || {
            let _ga = a1.lock();
            w1.wait();
            let _gb = b1.lock();
        });
        let h2 = gort::go!(move || {
            let _gb = b.lock();
            both.wait();
            let _ga = a.lock();
        });
        let _ = h1.join();
        let _ = h2.join();
        unreachable!("the joins never return");
    }
    let err = expect_deadlock(NAME);
    assert_eq!(err.matches("[mutex, ").count(), 2, "{err}");
}

fn a_wait_group_never_done() {
    const NAME: &str = "a_wait_group_never_done";
    if is_child(NAME) {
        let wg = WaitGroup::new();
        wg.add(2);
        let w = wg.clone();
        gort::go!(move || w.done()).join().unwrap();
        let w = wg.clone();
        let _h = gort::go!(move || w.wait());
        wg.wait();
        unreachable!("the wait never returns");
    }
    let err = expect_deadlock(NAME);
    assert!(err.contains("[waitgroup, "), "{err}");
}

/// Twenty correct programs, each with an idle period in which every green thread waits
/// (longer than the report's two looks, 100 ms apart) before something wakes them.
fn correct_programs_with_idle_periods_are_never_reported() {
    const NAME: &str = "correct_programs_with_idle_periods_are_never_reported";
    if is_child(NAME) {
        correct_programs();
        println!("all done");
        return;
    }
    let o = run_child_with_deadline(NAME, &[("GORT_MAXPROCS", "2")], Duration::from_secs(120));
    assert_success(&o);
    assert!(stdout(&o).contains("all done"));
    assert!(!stderr(&o).contains("deadlock"), "{}", stderr(&o));
}

const IDLE: Duration = Duration::from_millis(300);

fn correct_programs() {
    // 1. A green thread sleeps (a timer is pending).
    gort::go!(|| gort::time::sleep(IDLE)).join().unwrap();
    // 2. The main thread computes (here: sleeps in std) while a G waits on a channel.
    let (tx, rx) = chan::bounded::<u32>(0);
    let h = gort::go!(move || rx.recv().unwrap());
    std::thread::sleep(IDLE);
    tx.send(2).unwrap();
    assert_eq!(h.join().unwrap(), 2);
    // 3. A plain thread wakes a G after a while; main joins the G.
    let (tx, rx) = chan::bounded::<u32>(0);
    let h = gort::go!(move || rx.recv().unwrap());
    let t = std::thread::spawn(move || {
        std::thread::sleep(IDLE);
        tx.send(3).unwrap();
    });
    assert_eq!(h.join().unwrap(), 3);
    t.join().unwrap();
    // 4. A G waits on a socket; a plain thread connects later.
    let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = gort::go!(move || l.accept().map(|_| ()));
    let t = std::thread::spawn(move || {
        std::thread::sleep(IDLE);
        std::net::TcpStream::connect(addr).unwrap();
    });
    h.join().unwrap().unwrap();
    t.join().unwrap();
    // 5. A G inside `blocking`.
    gort::go!(|| gort::blocking(|| std::thread::sleep(IDLE)))
        .join()
        .unwrap();
    // 6. A select with an `after` arm.
    let (_tx, rx) = chan::bounded::<u32>(0);
    gort::go!(move || gort::select! {
        recv(rx) -> _ => unreachable!(),
        recv(gort::time::after(IDLE)) -> _ => {},
    })
    .join()
    .unwrap();
    // 7. `default(timeout)` in a select.
    let (_tx, rx) = chan::bounded::<u32>(0);
    gort::go!(move || gort::select! {
        recv(rx) -> _ => unreachable!(),
        default(IDLE) => {},
    })
    .join()
    .unwrap();
    // 8. The main thread waits with a timeout while G's wait on it.
    let (tx, rx) = chan::bounded::<u32>(0);
    let (never_tx, never_rx) = chan::bounded::<u32>(0);
    let h = gort::go!(move || rx.recv().unwrap());
    assert!(never_rx.recv_timeout(IDLE).is_err());
    tx.send(8).unwrap();
    h.join().unwrap();
    drop(never_tx);
    // 9. A plain thread blocked in std (mpsc) wakes G's later.
    let (stx, srx) = std::sync::mpsc::channel::<u32>();
    let (tx, rx) = chan::bounded::<u32>(0);
    let t = std::thread::spawn(move || tx.send(srx.recv().unwrap()).unwrap());
    let h = gort::go!(move || rx.recv().unwrap());
    std::thread::sleep(IDLE);
    stx.send(9).unwrap();
    assert_eq!(h.join().unwrap(), 9);
    t.join().unwrap();
    // 10. A G parked with `gort::park`, woken by a plain thread after a while.
    let (utx, urx) = chan::bounded::<gort::Unparker>(1);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let h = gort::go!(move || {
        utx.send(gort::Unparker::current()).unwrap();
        while !d.load(std::sync::atomic::Ordering::SeqCst) {
            gort::park();
        }
    });
    let u = urx.recv().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(IDLE);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        u.unpark();
    });
    h.join().unwrap();
    t.join().unwrap();
    // 11. A condvar wait with a timeout.
    let m = Arc::new(Mutex::new(false));
    let cv = Arc::new(gort::sync::Condvar::new());
    let (m2, cv2) = (m.clone(), cv.clone());
    gort::go!(move || {
        let g = m2.lock();
        let _ = cv2.wait_timeout(g, IDLE);
    })
    .join()
    .unwrap();
    // 12. A WaitGroup done by a plain thread after a while.
    let wg = WaitGroup::new();
    wg.add(1);
    let w = wg.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(IDLE);
        w.done();
    });
    let w = wg.clone();
    gort::go!(move || w.wait()).join().unwrap();
    t.join().unwrap();
    // 13. A ticker drives a G.
    gort::go!(|| {
        let t = gort::time::tick(Duration::from_millis(150));
        t.recv().unwrap();
        t.recv().unwrap();
    })
    .join()
    .unwrap();
    // 14. A pool with idle workers, used again after a pause.
    let pool = gort::pool::Pool::new(4).unwrap();
    pool.submit(|| ()).unwrap();
    std::thread::sleep(IDLE);
    pool.submit(|| ()).unwrap();
    pool.release();
    // 15. A context with a deadline.
    let (ctx, _cancel) = gort::context::with_timeout(&gort::context::background(), IDLE);
    gort::go!(move || {
        let _ = ctx.done().recv();
    })
    .join()
    .unwrap();
    // 16. A semaphore permit given back by a plain thread after a while.
    let sem = Arc::new(gort::sync::Semaphore::new(1));
    let permit = sem.clone().acquire_owned();
    let t = std::thread::spawn(move || {
        std::thread::sleep(IDLE);
        drop(permit);
    });
    let s2 = sem.clone();
    gort::go!(move || drop(s2.acquire())).join().unwrap();
    t.join().unwrap();
    // 17. A scoped plain thread (std::thread::scope) computes while G's wait.
    let (tx, rx) = chan::bounded::<u32>(0);
    let h = gort::go!(move || rx.recv().unwrap());
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(IDLE);
            tx.send(17).unwrap();
        });
    });
    assert_eq!(h.join().unwrap(), 17);
    // 18. A green thread joins another that sleeps.
    gort::go!(|| gort::go!(|| gort::time::sleep(IDLE)).join().unwrap())
        .join()
        .unwrap();
    // 19. A UDP socket waits for a datagram a plain thread sends later.
    let u = gort::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = u.local_addr().unwrap();
    let h = gort::go!(move || {
        let mut b = [0u8; 8];
        u.recv_from(&mut b).map(|(n, _)| n)
    });
    let t = std::thread::spawn(move || {
        std::thread::sleep(IDLE);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"hi", to).unwrap();
    });
    assert_eq!(h.join().unwrap().unwrap(), 2);
    t.join().unwrap();
    // 20. A G waits on a pipe that another process writes later, while the main thread
    // joins it and no other thread of ours runs: only the count of G's waiting on I/O
    // tells the check that something may still happen.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "sleep 0.3; echo hi"])
        .stdout(std::os::fd::OwnedFd::from(theirs))
        .spawn()
        .unwrap();
    let out = gort::net::PollFd::new(ours).unwrap();
    let h = gort::go!(move || {
        let mut b = [0u8; 8];
        out.read_with(|mut s| std::io::Read::read(&mut s, &mut b))
    });
    assert_eq!(h.join().unwrap().unwrap(), 3);
    child.wait().unwrap();
    // 21. Everything idle and nothing live: the runtime just sleeps.
    std::thread::sleep(IDLE);
}

fn main() {
    type Check = fn();
    let checks: [(&str, Check); 4] = [
        (
            "main_joins_a_green_thread_that_waits_on_a_channel_nobody_sends_on",
            main_joins_a_green_thread_that_waits_on_a_channel_nobody_sends_on,
        ),
        (
            "two_green_threads_lock_two_mutexes_in_opposite_order",
            two_green_threads_lock_two_mutexes_in_opposite_order,
        ),
        ("a_wait_group_never_done", a_wait_group_never_done),
        (
            "correct_programs_with_idle_periods_are_never_reported",
            correct_programs_with_idle_periods_are_never_reported,
        ),
    ];
    // In a child: run the one program asked for (each check calls it through `is_child`).
    if let Ok(child) = std::env::var(CHILD_VAR) {
        let (_, f) = checks
            .iter()
            .find(|(n, _)| *n == child)
            .expect("a known child");
        f();
        return;
    }
    // The parent: every check, in parallel (each waits on its own child).
    let handles: Vec<_> = checks
        .iter()
        .map(|&(name, f)| (name, std::thread::spawn(f)))
        .collect();
    let mut failed = 0;
    for (name, h) in handles {
        match h.join() {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 0, "{failed} deadlock checks failed");
}
