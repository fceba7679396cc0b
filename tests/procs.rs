//! Start-up configuration and whole-process behaviour, each in a child process:
//! GORT_MAXPROCS, stealing, fairness, stack reuse, kernel mappings, guard fallback limits.
mod common;
use common::*;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn default_procs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(256)
}

#[test]
fn maxprocs_from_env() {
    if is_child("maxprocs_from_env") {
        // The runtime starts lazily: make it start, then report.
        gort::go!(|| ()).join().unwrap();
        println!("procs={}", gort::max_procs());
        return;
    }
    let d = default_procs();
    let cases: &[(&str, usize, bool)] = &[
        ("1", 1, false),
        ("3", 3, false),
        (" 2 ", 2, false),
        ("256", 256, false),
        ("300", 256, true),
        ("99999999999999999999", 256, true),
        ("0", d, true),
        ("-4", d, true),
        ("abc", d, true),
        ("1.5", d, true),
    ];
    for &(val, want, warns) in cases {
        let o = run_child("maxprocs_from_env", &[("GORT_MAXPROCS", val)]);
        assert_success(&o);
        assert!(
            stdout(&o).contains(&format!("procs={want}\n")),
            "GORT_MAXPROCS={val:?}: {}",
            stdout(&o)
        );
        let err = stderr(&o);
        let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("gort:")).collect();
        if warns {
            assert_eq!(warnings.len(), 1, "GORT_MAXPROCS={val:?}: {err}");
            assert!(warnings[0].contains("GORT_MAXPROCS"), "{err}");
            assert!(warnings[0].contains(&format!("{val:?}")), "{err}");
        } else {
            assert!(warnings.is_empty(), "GORT_MAXPROCS={val:?}: {err}");
        }
    }
    // Unset: the CPU count, silently.
    let o = run_child("maxprocs_from_env", &[]);
    assert_success(&o);
    assert!(stdout(&o).contains(&format!("procs={d}\n")));
    assert!(!stderr(&o).contains("gort:"));
}

#[test]
fn bad_stack_size_env_warns_and_uses_default() {
    if is_child("bad_stack_size_env_warns_and_uses_default") {
        assert_eq!(gort::go!(|| 5).join().unwrap(), 5);
        return;
    }
    let o = run_child(
        "bad_stack_size_env_warns_and_uses_default",
        &[("GORT_STACK_SIZE", "lots")],
    );
    assert_success(&o);
    assert!(
        stderr(&o).contains("GORT_STACK_SIZE=\"lots\""),
        "{}",
        stderr(&o)
    );
}

/// Children queued on one P (spawned by a G, so they go to its local queue) run on more
/// than one OS thread: the idle P's M stole some.
#[test]
fn stealing_spreads_local_work() {
    if is_child("stealing_spreads_local_work") {
        assert_eq!(gort::max_procs(), 2);
        let ran_on = gort::go!(|| {
            let seen = Arc::new(Mutex::new(HashSet::new()));
            let hs: Vec<_> = (0..64)
                .map(|_| {
                    let seen = seen.clone();
                    gort::go!(move || {
                        // Yield until two OS threads have run some child (or give up after
                        // a bound, which the assertion below then reports).
                        for _ in 0..5_000_000 {
                            let me = std::thread::current().id();
                            let n = {
                                let mut s = seen.lock().unwrap();
                                s.insert(me);
                                s.len()
                            };
                            if n >= 2 {
                                break;
                            }
                            gort::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let s = seen.lock().unwrap();
            s.clone()
        })
        .join()
        .unwrap();
        assert_eq!(ran_on.len(), 2, "children ran on {ran_on:?}");
        return;
    }
    let o = run_child("stealing_spreads_local_work", &[("GORT_MAXPROCS", "2")]);
    assert_success(&o);
}

/// With one P, a G that loops on yield_now does not starve others, whether they were
/// queued locally (spawned by a G) or globally (spawned by the main thread).
#[test]
fn yield_loop_does_not_starve_with_one_p() {
    if is_child("yield_loop_does_not_starve_with_one_p") {
        assert_eq!(gort::max_procs(), 1);
        for from_g in [false, true] {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            let spinner = gort::go!(move || {
                let setter = {
                    let f = f.clone();
                    move || f.store(true, Ordering::SeqCst)
                };
                let h = from_g.then(|| gort::go!(setter.clone()));
                for i in 0..10_000_000u64 {
                    if f.load(Ordering::SeqCst) {
                        if let Some(h) = h {
                            h.join().unwrap();
                        }
                        return i;
                    }
                    gort::yield_now();
                }
                panic!("starved: the other G never ran");
            });
            if !from_g {
                let f = flag.clone();
                gort::go!(move || f.store(true, Ordering::SeqCst));
            }
            spinner.join().unwrap();
        }
        // Many yielders spawned together share the one P round-robin: when one finishes,
        // every other one is at most one step behind.
        let mins = gort::go!(|| {
            let progress: Arc<Vec<AtomicUsize>> =
                Arc::new((0..8).map(|_| AtomicUsize::new(0)).collect());
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let p = progress.clone();
                    gort::go!(move || {
                        for _ in 0..1000 {
                            p[i].fetch_add(1, Ordering::SeqCst);
                            gort::yield_now();
                        }
                        p.iter().map(|x| x.load(Ordering::SeqCst)).min().unwrap()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        assert!(mins.iter().all(|&m| m >= 999), "{mins:?}");
        return;
    }
    let o = run_child(
        "yield_loop_does_not_starve_with_one_p",
        &[("GORT_MAXPROCS", "1")],
    );
    assert_success(&o);
}

#[inline(never)]
fn entry_sp() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

#[inline(never)]
fn touch_deep(bytes: usize) -> usize {
    let mut buf = [0u8; 200 * 1024];
    let n = bytes.min(buf.len());
    for i in (0..n).step_by(512) {
        buf[i] = i as u8;
    }
    std::hint::black_box(&mut buf);
    buf[n / 2] as usize
}

/// A G that went 200 KiB deep gives its stack back, and a later G reuses it. (Not always the
/// very next one: a deep stack goes to its class's `deep` list, not the P's cache, and
/// sysmon may be scrubbing it at that moment; so batches of G's alive at once, until one of
/// them gets it.)
#[test]
fn deep_stack_is_recycled() {
    if is_child("deep_stack_is_recycled") {
        let deep = gort::go!(|| {
            let sp = entry_sp();
            touch_deep(200 * 1024);
            sp
        })
        .join()
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..50 {
            let (sp_tx, sp_rx) = gort::chan::unbounded::<usize>();
            let (gate_tx, gate_rx) = gort::chan::bounded::<()>(0);
            let hs: Vec<_> = (0..64)
                .map(|_| {
                    let (sp_tx, gate_rx) = (sp_tx.clone(), gate_rx.clone());
                    gort::go!(move || {
                        sp_tx.send(entry_sp()).unwrap();
                        let _ = gate_rx.recv(); // alive until the batch is done
                    })
                })
                .collect();
            let sps: Vec<usize> = (0..64).map(|_| sp_rx.recv().unwrap()).collect();
            drop(gate_tx);
            hs.into_iter().for_each(|h| h.join().unwrap());
            if sps.iter().any(|sp| sp.abs_diff(deep) < 4096) {
                return;
            }
            seen.extend(sps);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!(
            "the deep stack at {deep:#x} was never reused ({} stacks seen)",
            seen.len()
        );
    }
    let o = run_child("deep_stack_is_recycled", &[("GORT_MAXPROCS", "1")]);
    assert_success(&o);
}

fn maps_lines() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Parks `n` G's at once in a chain of joins behind a gate G; returns the release function
/// and the last handle. `started` counts the G's that reached their join.
fn park_chain(n: usize, started: Arc<AtomicUsize>) -> (Arc<AtomicBool>, gort::JoinHandle<usize>) {
    let open = Arc::new(AtomicBool::new(false));
    let o = open.clone();
    let mut last = gort::go!(move || {
        while !o.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        0usize
    });
    for _ in 0..n {
        let prev = last;
        let s = started.clone();
        last = gort::go!(move || {
            s.fetch_add(1, Ordering::SeqCst);
            prev.join().unwrap() + 1
        });
    }
    (open, last)
}

fn wait_for(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
}

/// 100,000 parked G's: their stacks share a handful of kernel mappings.
#[test]
fn many_parked_gs_few_mappings() {
    if is_child("many_parked_gs_few_mappings") {
        const N: usize = 100_000;
        let started = Arc::new(AtomicUsize::new(0));
        let (open, last) = park_chain(N, started.clone());
        wait_for(&started, N);
        let lines = maps_lines();
        let kind = gort::__stack_guard_kind();
        println!("guard={kind} maps={lines}");
        if kind == "madvise" {
            assert!(lines < 1000, "{lines} lines in /proc/self/maps");
        }
        assert!(gort::num_green_threads() > N);
        open.store(true, Ordering::SeqCst);
        assert_eq!(last.join().unwrap(), N);
        assert_eq!(gort::num_green_threads(), 0);
        return;
    }
    let o = run_child("many_parked_gs_few_mappings", &[]);
    assert_success(&o);
    println!("{}", stdout(&o));
}

/// With mprotect guards (forced here; what kernels before 6.13 get), the kernel's mapping
/// limit is reached: Builder::spawn says so, nothing crashes, and every G already spawned
/// still runs to completion.
#[test]
fn mprotect_guards_hit_map_limit_with_an_error() {
    if is_child("mprotect_guards_hit_map_limit_with_an_error") {
        let open = Arc::new(AtomicBool::new(false));
        let o = open.clone();
        let mut last = gort::go!(move || {
            while !o.load(Ordering::SeqCst) {
                gort::yield_now();
            }
            0usize
        });
        let mut n = 0usize;
        let err = loop {
            let prev = last;
            match gort::Builder::new().spawn(move || prev.join().unwrap() + 1) {
                Ok(h) => last = h,
                Err(e) => {
                    // `prev` moved into the closure that failed to spawn; it was dropped
                    // (detached), so the chain behind it still finishes.
                    break e;
                }
            }
            n += 1;
            assert!(n < 1_000_000, "never hit the mapping limit");
        };
        let msg = err.to_string();
        assert!(msg.contains("max_map_count"), "{msg}");
        assert_eq!(gort::__stack_guard_kind(), "mprotect");
        println!("spawned {n} before: {msg}");
        // go!() binds its stack when the G first runs: the same refusal reaches its join.
        let e = gort::go!(|| 1).join().unwrap_err();
        let m = e.downcast_ref::<String>().expect("a message");
        assert!(
            m.contains("could not start") && m.contains("max_map_count"),
            "{m}"
        );
        open.store(true, Ordering::SeqCst);
        // The closure that failed to spawn owned the last handle and dropped it: the chain
        // is detached. Wait for all of it to finish.
        while gort::num_green_threads() > 0 {
            std::thread::yield_now();
        }
        // Stacks come back and the runtime is usable again.
        assert_eq!(gort::go!(|| 7).join().unwrap(), 7);
        assert!(gort::Builder::new().spawn(|| 8).unwrap().join().unwrap() == 8);
        return;
    }
    let o = run_child(
        "mprotect_guards_hit_map_limit_with_an_error",
        &[("GORT_STACK_GUARD", "mprotect")],
    );
    assert_success(&o);
    println!("{}", stdout(&o));
}

/// Deep stacks give their memory back once the runtime goes idle: 64 G's touch 200 KiB of
/// stack each (12.5 MiB), finish, and RSS returns near where it was.
#[test]
fn deep_stack_memory_is_returned_when_idle() {
    if is_child("deep_stack_memory_is_returned_when_idle") {
        gort::go!(|| ()).join().unwrap();
        let before = rss_kib();
        let deep = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let deep = deep.clone();
                let release = release.clone();
                gort::go!(move || {
                    let r = touch_deep(200 * 1024);
                    // Hold the stack (it is still deep: the frame above is gone, but its
                    // pages stay committed) until the main thread has measured.
                    deep.fetch_add(1, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        gort::yield_now();
                    }
                    r
                })
            })
            .collect();
        wait_for(&deep, 64);
        let peak = rss_kib();
        release.store(true, Ordering::SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        assert!(
            peak > before + 10 * 1024,
            "the test did not touch memory: {before} -> {peak} KiB"
        );
        // Eventually (a generous bound; no timing is asserted) the idle M's scrub.
        let mut now = peak;
        for _ in 0..1000 {
            now = rss_kib();
            if now < before + 4 * 1024 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        println!("RSS KiB: before {before}, peak {peak}, after {now}");
        assert!(
            now < before + 4 * 1024,
            "stacks not scrubbed: {before} -> {peak} -> {now} KiB"
        );
        return;
    }
    let o = run_child("deep_stack_memory_is_returned_when_idle", &[]);
    assert_success(&o);
    println!("{}", stdout(&o));
}

/// With one P, two G's handing a value back and forth forever (each wake-up goes to
/// `runnext`) do not starve a third G waiting in the local run queue.
#[test]
fn runnext_ping_pong_does_not_starve_the_queue() {
    if is_child("runnext_ping_pong_does_not_starve_the_queue") {
        assert_eq!(gort::max_procs(), 1);
        let done = gort::go!(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let (a_tx, a_rx) = gort::chan::bounded::<u64>(0);
            let (b_tx, b_rx) = gort::chan::bounded::<u64>(0);
            let s1 = stop.clone();
            let pinger = gort::go!(move || {
                let mut n = 0u64;
                let mut third = None;
                while !s1.load(Ordering::SeqCst) {
                    if n == 1000 {
                        // Spawned into runnext, then pushed into the local queue by the
                        // hand-off below: from there on only the queue holds it.
                        let s2 = s1.clone();
                        third = Some(gort::go!(move || s2.store(true, Ordering::SeqCst)));
                    }
                    a_tx.send(n).unwrap();
                    n = b_rx.recv().unwrap();
                }
                third.expect("spawned").join().unwrap();
                n
            });
            let ponger = gort::go!(move || {
                for v in a_rx.iter() {
                    if b_tx.send(v + 1).is_err() {
                        break;
                    }
                }
            });
            let n = pinger.join().unwrap();
            ponger.join().unwrap();
            n
        })
        .join()
        .unwrap();
        println!("ping-pong rounds before the third G ran: {done}");
        return;
    }
    let o = run_child(
        "runnext_ping_pong_does_not_starve_the_queue",
        &[("GORT_MAXPROCS", "1")],
    );
    assert_success(&o);
}
