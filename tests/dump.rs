//! The green-thread dump: every wait reason named, with its spawn site and name; SIGQUIT
//! under `GORT_DEBUG=dump` prints it and exits with status 2 (and is left alone otherwise).
mod common;
use common::*;

use gort::chan;
use gort::sync::{Barrier, Condvar, Mutex, OnceLock, RwLock, Semaphore, WaitGroup};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `dump()` until `pred` holds (the G's get to their waits at their own pace); the
/// deadline only turns a hang into a failure with the last dump shown.
fn dump_until(what: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let d = gort::dump();
        if pred(&d) {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never saw {what} in:\n{d}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The dump's entry for the G spawned at `line` of this file.
fn entry_at(d: &str, line: u32) -> Option<&str> {
    let site = format!("tests/dump.rs:{line}:");
    let lines: Vec<&str> = d.lines().collect();
    lines
        .windows(2)
        .find(|w| w[1].contains(&site))
        .map(|w| w[0])
}

#[test]
fn every_wait_reason_is_named_with_its_spawn_site() {
    let release = Arc::new(AtomicBool::new(false));
    let mut expect: Vec<(u32, &str)> = Vec::new();
    let mut handles = Vec::new();

    let (keep_tx, rx) = chan::bounded::<u32>(0);
    let (tx, keep_rx) = chan::bounded::<u32>(0);
    let (stop_tx, stop_rx) = chan::bounded::<()>(0);
    macro_rules! waiter {
        ($reason:expr, $f:expr) => {{
            let h = gort::go!($f);
            expect.push((line!(), $reason));
            handles.push(h);
        }};
    }
    {
        let rx = rx.clone();
        waiter!("chan receive", move || {
            let _ = rx.recv();
        });
    }
    {
        let tx = tx.clone();
        waiter!("chan send", move || {
            let _ = tx.send(1);
        });
    }
    {
        let stop = stop_rx.clone();
        let rx2 = rx.clone();
        waiter!("select", move || gort::select! {
            recv(rx2) -> _ => {},
            recv(stop) -> _ => {},
        });
    }
    let m = Arc::new(Mutex::new(()));
    let guard = m.lock();
    {
        let m = m.clone();
        waiter!("mutex", move || drop(m.lock()));
    }
    let rw = Arc::new(RwLock::new(()));
    let wguard = rw.write();
    {
        let rw = rw.clone();
        waiter!("rwlock", move || drop(rw.read()));
    }
    let cv = Arc::new((Mutex::new(false), Condvar::new()));
    {
        let cv = cv.clone();
        waiter!("condvar", move || {
            let mut g = cv.0.lock();
            while !*g {
                g = cv.1.wait(g);
            }
        });
    }
    let wg = WaitGroup::new();
    wg.add(1);
    {
        let wg = wg.clone();
        waiter!("waitgroup", move || wg.wait());
    }
    let sem = Arc::new(Semaphore::new(0));
    {
        let sem = sem.clone();
        waiter!("semaphore", move || drop(sem.acquire()));
    }
    let barrier = Arc::new(Barrier::new(2));
    {
        let b = barrier.clone();
        waiter!("barrier", move || {
            b.wait();
        });
    }
    let once = Arc::new(OnceLock::<u32>::new());
    let (init_started_tx, init_started_rx) = chan::bounded::<()>(0);
    let (init_go_tx, init_go_rx) = chan::bounded::<()>(0);
    {
        let once = once.clone();
        // The initialiser waits on a channel while holding the OnceLock.
        handles.push(gort::go!(move || {
            once.get_or_init(|| {
                init_started_tx.send(()).unwrap();
                init_go_rx.recv().unwrap();
                1
            });
        }));
    }
    init_started_rx.recv().unwrap();
    {
        let once = once.clone();
        waiter!("once", move || {
            once.get_or_init(|| 2);
        });
    }
    {
        let r = release.clone();
        waiter!("sleep", move || {
            while !r.load(Ordering::SeqCst) {
                gort::time::sleep(Duration::from_millis(200));
            }
        });
    }
    {
        let stop = stop_rx.clone();
        let inner = gort::go!(move || {
            let _ = stop.recv();
        });
        waiter!("join", move || inner.join().unwrap());
    }
    {
        let r = release.clone();
        waiter!("park", move || {
            while !r.load(Ordering::SeqCst) {
                gort::park_timeout(Duration::from_millis(200));
            }
        });
    }
    let listener = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    waiter!("I/O wait", move || drop(listener.accept()));
    {
        let r = release.clone();
        waiter!("blocking call", move || gort::blocking(|| {
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    let fut_waker: Arc<std::sync::Mutex<Option<std::task::Waker>>> = Default::default();
    {
        let (r, w) = (release.clone(), fut_waker.clone());
        waiter!("future", move || gort::block_on(std::future::poll_fn(
            |cx| {
                *w.lock().unwrap() = Some(cx.waker().clone());
                if r.load(Ordering::SeqCst) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            }
        )));
    }
    let named = gort::Builder::new()
        .name("the-named-one".into())
        .spawn({
            let stop = stop_rx.clone();
            move || {
                let _ = stop.recv();
            }
        })
        .unwrap();

    let d = dump_until("every wait reason", |d| {
        expect
            .iter()
            .all(|(line, reason)| entry_at(d, *line).is_some_and(|e| e.contains(reason)))
            && d.contains("\"the-named-one\" [chan receive")
    });
    // Each entry: `green thread N [reason, time]:`, then where it was spawned.
    for (line, reason) in &expect {
        let e = entry_at(&d, *line).unwrap();
        assert!(e.starts_with("green thread "), "{e}");
        assert!(e.contains(&format!("[{reason}, ")), "{e}");
        assert!(e.ends_with(" ms]:") || e.ends_with(" s]:"), "{e}");
    }
    let lines: Vec<&str> = d.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("\"the-named-one\""))
        .unwrap();
    assert!(lines[i].starts_with(&format!("green thread {} \"the-named-one\"", named.id())));
    assert!(
        lines[i + 1].contains("spawned at tests/dump.rs:"),
        "{}",
        lines[i + 1]
    );

    // Release everyone and check nothing is left waiting.
    release.store(true, Ordering::SeqCst);
    drop(stop_tx);
    drop((keep_tx, keep_rx, tx, rx));
    if let Some(w) = fut_waker.lock().unwrap().take() {
        w.wake();
    }
    drop(guard);
    drop(wguard);
    *cv.0.lock() = true;
    cv.1.notify_all();
    wg.done();
    sem.add_permits(1);
    barrier.wait();
    init_go_tx.send(()).unwrap();
    drop(std::net::TcpStream::connect(addr).unwrap());
    for h in handles {
        h.join().unwrap();
    }
    named.join().unwrap();
    // A G that just finished may still be on its way out of its last switch: it leaves
    // the dump (state DEAD) right after.
    dump_until("the finished green threads gone", |d| {
        expect.iter().all(|(line, _)| entry_at(d, *line).is_none()) && !d.contains("the-named-one")
    });
}

#[test]
fn a_running_green_thread_and_a_runnable_one() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    // One G computes (running, or runnable when it yields); the dump sees it either way.
    let h = gort::go!(move || {
        while !s.load(Ordering::SeqCst) {
            std::hint::spin_loop();
            gort::yield_now();
        }
    });
    let d = dump_until("a running or runnable G", |d| {
        d.contains("[running]:") || d.contains("[runnable]:")
    });
    assert!(d.contains("spawned at tests/dump.rs:"), "{d}");
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
}

/// Runs the child `test` with `env`, waits for its "ready" line, sends SIGQUIT, and returns
/// its exit status and stderr.
fn quit_child(test: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = child_command(test, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run child");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child ended before ready"
        );
        if line.trim_end().ends_with("ready") {
            break;
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
    let o = child.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A hung program: G's stuck on a channel and on a mutex; prints "ready" and waits.
fn hung_program() {
    let (_tx, rx) = chan::bounded::<u32>(0);
    let m = Arc::new(Mutex::new(()));
    let _held = m.lock();
    let _a = gort::go!(move || rx.recv());
    let m2 = m.clone();
    let _b = gort::go!(move || drop(m2.lock()));
    dump_until("both waits", |d| {
        d.contains("[chan receive") && d.contains("[mutex")
    });
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn sigquit_prints_the_dump_and_exits_2_under_gort_debug_dump() {
    const NAME: &str = "sigquit_prints_the_dump_and_exits_2_under_gort_debug_dump";
    if is_child(NAME) {
        hung_program();
    }
    let (status, err) = quit_child(NAME, &[("GORT_DEBUG", "dump")]);
    assert_eq!(status.code(), Some(2), "{status:?}\n{err}");
    assert!(err.contains("SIGQUIT: quit"), "{err}");
    assert!(err.contains("[chan receive, "), "{err}");
    assert!(err.contains("[mutex, "), "{err}");
    assert!(err.contains("spawned at tests/dump.rs:"), "{err}");
}

#[test]
fn sigquit_is_left_alone_without_it() {
    const NAME: &str = "sigquit_is_left_alone_without_it";
    if is_child(NAME) {
        hung_program();
    }
    let (status, err) = quit_child(NAME, &[]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGQUIT), "{status:?}\n{err}");
    assert!(!err.contains("SIGQUIT: quit"), "{err}");
}
