//! `gort::blocking`: the P hand-off, the thread cap, sysmon's idleness, schedtrace and
//! `stats`. Whole-process properties run in a child process.

mod common;

use common::{assert_success, cpu_ticks, is_child, run_child, stderr, stdout, ticks_per_second};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `Threads:` of /proc/self/status.
fn os_threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// User + system CPU time of the process, in clock ticks.
/// Waits (politely) until `cond` holds, failing after a generous bound instead of hanging.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn counter_advances_while_a_g_blocks_with_one_p() {
    if is_child("counter_advances_while_a_g_blocks_with_one_p") {
        assert_eq!(gort::max_procs(), 1);
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (count.clone(), stop.clone());
        let counter = gort::go!(move || {
            while !st.load(Ordering::Relaxed) {
                c.fetch_add(1, Ordering::Relaxed);
                gort::yield_now();
            }
        });
        let c = count.clone();
        let blocked = gort::go!(move || {
            // Let the counter start: both G's share the one P.
            while c.load(Ordering::Relaxed) == 0 {
                gort::yield_now();
            }
            gort::blocking(|| {
                let before = c.load(Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(300));
                let after = c.load(Ordering::Relaxed);
                (before, after)
            })
        });
        let (before, after) = blocked.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        counter.join().unwrap();
        println!("counted {before} -> {after}");
        assert!(
            after > before,
            "the counter did not run while its P's G was blocked"
        );
        return;
    }
    let o = run_child(
        "counter_advances_while_a_g_blocks_with_one_p",
        &[("GORT_MAXPROCS", "1")],
    );
    assert_success(&o);
}

#[test]
fn two_hundred_blocking_calls_within_sixteen_threads() {
    if is_child("two_hundred_blocking_calls_within_sixteen_threads") {
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (pk, st) = (peak.clone(), stop.clone());
        let sampler = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                pk.fetch_max(os_threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        // The threads before the runtime starts: this one, the sampler, the harness's.
        let before = os_threads();
        let hs: Vec<_> = (0..200u64)
            .map(|i| {
                gort::go!(move || {
                    gort::blocking(|| {
                        std::thread::sleep(Duration::from_millis(20));
                        i * i
                    })
                })
            })
            .collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        assert_eq!(sum, (0..200u64).map(|i| i * i).sum::<u64>());
        let runtime_peak = peak.load(Ordering::Relaxed).max(os_threads()) - before;
        let st = gort::stats();
        println!("runtime threads: peak {runtime_peak}, now {}", st.threads);
        assert!(
            runtime_peak <= 16,
            "{runtime_peak} runtime threads with GORT_MAXTHREADS=16"
        );
        assert!(st.threads <= 16);
        // The hand-off happened: more threads than the 2 P's and the monitor.
        assert!(st.threads > 3, "no hand-off: {st:?}");
        return;
    }
    let o = run_child(
        "two_hundred_blocking_calls_within_sixteen_threads",
        &[("GORT_MAXPROCS", "2"), ("GORT_MAXTHREADS", "16")],
    );
    assert_success(&o);
}

#[test]
fn spare_ms_are_parked_and_reused() {
    if is_child("spare_ms_are_parked_and_reused") {
        let round = || {
            let hs: Vec<_> = (0..40u64)
                .map(|i| {
                    gort::go!(move || {
                        gort::blocking(|| {
                            std::thread::sleep(Duration::from_millis(30));
                            i
                        })
                    })
                })
                .collect();
            let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, 40 * 39 / 2);
        };
        round();
        let first = gort::stats();
        round();
        let second = gort::stats();
        println!("after round 1: {first}\nafter round 2: {second}");
        // Round 1 needed M's beyond the P's; they went back to the idle list ...
        assert!(first.threads > 3, "{first}");
        eventually("spare M's parked", || gort::stats().idle_threads >= 1);
        // ... and round 2 reused them instead of starting as many again.
        assert!(second.threads <= first.threads + 5, "{first}\n{second}");
        return;
    }
    let o = run_child("spare_ms_are_parked_and_reused", &[("GORT_MAXPROCS", "2")]);
    assert_success(&o);
    println!("{}", stdout(&o));
}

#[test]
fn idle_runtime_uses_almost_no_cpu() {
    if is_child("idle_runtime_uses_almost_no_cpu") {
        // A burst: spawns, channels, timers and blocking calls on every P.
        let (tx, rx) = gort::chan::bounded::<u64>(16);
        let producers: Vec<_> = (0..100u64)
            .map(|k| {
                let tx = tx.clone();
                gort::go!(move || {
                    for i in 0..100 {
                        tx.send(k * 100 + i).unwrap();
                        if i % 25 == 0 {
                            gort::sleep(Duration::from_millis(1));
                            gort::blocking(|| std::thread::sleep(Duration::from_micros(200)));
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let consumer = gort::go!(move || rx.iter().sum::<u64>());
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(consumer.join().unwrap(), (0..10_000u64).sum::<u64>());
        // Idle now. Let stragglers (spinning M's, sysmon's last rounds) settle, then measure.
        std::thread::sleep(Duration::from_millis(200));
        let t0 = cpu_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let used = (cpu_ticks() - t0) * 1000 / ticks_per_second();
        println!("CPU over 1 s idle: {used} ms");
        assert!(used < 50, "an idle runtime used {used} ms of CPU in 1 s");
        return;
    }
    let o = run_child("idle_runtime_uses_almost_no_cpu", &[]);
    assert_success(&o);
}

#[test]
fn schedtrace_lines_parse() {
    if is_child("schedtrace_lines_parse") {
        let done = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let done = done.clone();
                gort::go!(move || {
                    while !done.load(Ordering::Relaxed) {
                        gort::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        // Run until the trace must have printed a few times (5 periods and more).
        std::thread::sleep(Duration::from_millis(80));
        done.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        return;
    }
    let o = run_child(
        "schedtrace_lines_parse",
        &[("GORT_MAXPROCS", "2"), ("GORT_DEBUG", "schedtrace=10")],
    );
    assert_success(&o);
    let err = stderr(&o);
    let mut times = Vec::new();
    for line in err.lines().filter(|l| l.starts_with("SCHED ")) {
        // SCHED <t>ms: gomaxprocs=<n> idleprocs=<n> threads=<n> spinningthreads=<n>
        // idlethreads=<n> iowait=<n> runqueue=<n> [<a> <b>]
        let (head, rest) = line.split_once(": ").expect(line);
        let t: u64 = head["SCHED ".len()..]
            .strip_suffix("ms")
            .expect(line)
            .parse()
            .expect(line);
        let (fields, locals) = rest.split_once(" [").expect(line);
        let names: Vec<(&str, usize)> = fields
            .split(' ')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect(line);
                (k, v.parse().expect(line))
            })
            .collect();
        let keys: Vec<&str> = names.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "gomaxprocs",
                "idleprocs",
                "threads",
                "spinningthreads",
                "idlethreads",
                "iowait",
                "runqueue"
            ],
            "{line}"
        );
        assert_eq!(names[0].1, 2, "{line}");
        assert!(names[1].1 <= 2, "{line}");
        let locals: Vec<usize> = locals
            .strip_suffix(']')
            .expect(line)
            .split(' ')
            .map(|n| n.parse().expect(line))
            .collect();
        assert_eq!(locals.len(), 2, "{line}");
        times.push(t);
    }
    assert!(times.len() >= 2, "too few SCHED lines:\n{err}");
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

#[test]
fn stats_match_a_known_workload() {
    if is_child("stats_match_a_known_workload") {
        let st = gort::stats();
        assert_eq!(st.max_procs, 2);
        assert_eq!(st.local_runqueues.len(), 2);
        assert_eq!(st.live_green_threads, 0);
        let (tx, rx) = gort::chan::bounded::<u64>(0);
        let hs: Vec<_> = (0..1000u64)
            .map(|_| {
                let rx = rx.clone();
                gort::go!(move || rx.recv().unwrap())
            })
            .collect();
        eventually("1,000 G's parked", || {
            gort::stats().parked_green_threads == 1000
        });
        let st = gort::stats();
        println!("{st}");
        assert_eq!(st.live_green_threads, 1000, "{st}");
        assert_eq!(st.parked_green_threads, 1000, "{st}");
        assert_eq!(st.global_runqueue, 0, "{st}");
        assert_eq!(st.local_runqueues, [0, 0], "{st}");
        assert!(st.threads >= 2, "an M and the monitor: {st}");
        // 1,000 stacks of 256 KiB are reserved (and more may be).
        assert!(st.stack_bytes_reserved >= 1000 * 256 * 1024, "{st}");
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 999 * 1000 / 2);
        let st = gort::stats();
        println!("{st}");
        assert_eq!(st.live_green_threads, 0, "{st}");
        assert_eq!(st.parked_green_threads, 0, "{st}");
        // Every stack comes back to a cache (just after its G's result is published).
        eventually("1,000 stacks cached", || {
            gort::stats().stacks_cached >= 1000
        });
        return;
    }
    let o = run_child("stats_match_a_known_workload", &[("GORT_MAXPROCS", "2")]);
    assert_success(&o);
}

#[test]
fn bad_maxthreads_values_warn_and_run() {
    if is_child("bad_maxthreads_values_warn_and_run") {
        let h = gort::go!(|| gort::blocking(|| 7));
        assert_eq!(h.join().unwrap(), 7);
        println!("threads={}", gort::stats().threads);
        return;
    }
    for (val, want) in [
        ("lots", "ignoring GORT_MAXTHREADS=\"lots\""),
        ("0", "ignoring GORT_MAXTHREADS=\"0\""),
        ("1", "is below 3"),
    ] {
        let o = run_child(
            "bad_maxthreads_values_warn_and_run",
            &[("GORT_MAXPROCS", "2"), ("GORT_MAXTHREADS", val)],
        );
        assert_success(&o);
        let err = stderr(&o);
        assert_eq!(
            err.lines()
                .filter(|l| l.contains("GORT_MAXTHREADS"))
                .count(),
            1,
            "{err}"
        );
        assert!(err.contains(want), "{err}");
    }
    let o = run_child(
        "bad_maxthreads_values_warn_and_run",
        &[("GORT_DEBUG", "schedtrace=soon")],
    );
    assert_success(&o);
    assert!(stderr(&o).contains("GORT_DEBUG"), "{}", stderr(&o));
    assert!(stdout(&o).contains("threads="));
}

#[test]
fn hogs_are_reported_once() {
    if is_child("hogs_are_reported_once") {
        let h = gort::go!(|| {
            // Spins without a scheduling point until sysmon must have seen it twice over.
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(120) {
                x = x.wrapping_mul(31).wrapping_add(1);
            }
            x
        });
        let id = h.id();
        h.join().unwrap();
        println!("hog id {id}");
        return;
    }
    let o = run_child(
        "hogs_are_reported_once",
        &[("GORT_MAXPROCS", "2"), ("GORT_DEBUG", "hogs=20")],
    );
    assert_success(&o);
    let out = stdout(&o);
    let id = out
        .lines()
        .find_map(|l| l.split_once("hog id ").map(|(_, id)| id))
        .expect(&out)
        .trim()
        .to_string();
    let err = stderr(&o);
    let reports: Vec<&str> = err.lines().filter(|l| l.contains("has held P")).collect();
    assert_eq!(reports.len(), 1, "{err}");
    assert!(
        reports[0].contains(&format!("green thread #{id} ")),
        "{err}"
    );
}

#[test]
fn blocking_outside_a_g_just_runs_it() {
    assert!(!gort::is_green_thread());
    assert_eq!(gort::blocking(|| 5 + 5), 10);
    // Nested: the inner call runs on a plain thread as far as the runtime is concerned.
    let h = gort::go!(|| gort::blocking(|| gort::blocking(gort::is_green_thread)));
    assert!(!h.join().unwrap());
}

#[test]
fn panics_in_blocking_propagate_and_the_g_goes_on() {
    let h = gort::go!(|| {
        let r = std::panic::catch_unwind(|| {
            gort::blocking(|| {
                std::thread::sleep(Duration::from_millis(5));
                panic!("inside blocking")
            })
        });
        let msg = *r.unwrap_err().downcast::<&str>().unwrap();
        // Still a green thread, with a P: gort calls park it again.
        assert!(gort::is_green_thread());
        gort::sleep(Duration::from_millis(1));
        gort::yield_now();
        msg
    });
    assert_eq!(h.join().unwrap(), "inside blocking");
}

#[test]
fn gort_calls_inside_blocking_work() {
    // Inside `blocking`, channels block the thread and spawns go to the global queue; the
    // G's on the other side run on other M's.
    let hs: Vec<_> = (0..50u64)
        .map(|k| {
            gort::go!(move || {
                let (tx, rx) = gort::chan::bounded::<u64>(0);
                gort::blocking(move || {
                    let child = gort::go!(move || {
                        let v = rx.recv().unwrap();
                        v * 2
                    });
                    tx.send(k).unwrap();
                    child.join().unwrap()
                })
            })
        })
        .collect();
    let got: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(got, (0..50u64).map(|k| 2 * k).sum::<u64>());
}

#[test]
fn many_gs_in_and_out_of_blocking() {
    // G's alternate blocking calls of varied length with channel hand-offs and yields, so
    // P's are taken and given back, M's park and wake, and G's come out of `blocking`
    // with and without their P. Every message counted exactly once.
    const GS: u64 = 400;
    const ROUNDS: u64 = 25;
    let (tx, rx) = gort::chan::bounded::<u64>(8);
    let hs: Vec<_> = (0..GS)
        .map(|k| {
            let tx = tx.clone();
            gort::go!(move || {
                for r in 0..ROUNDS {
                    let v = gort::blocking(|| {
                        if (k + r) % 7 == 0 {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                        k * ROUNDS + r
                    });
                    tx.send(v).unwrap();
                    if r % 3 == 0 {
                        gort::yield_now();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = gort::go!(move || {
        let mut seen = vec![false; (GS * ROUNDS) as usize];
        for v in rx.iter() {
            assert!(!std::mem::replace(&mut seen[v as usize], true), "{v} twice");
        }
        seen.iter().all(|&s| s)
    });
    for h in hs {
        h.join().unwrap();
    }
    assert!(consumer.join().unwrap(), "a message was lost");
}

/// A silent freeze gets a message, by default: with one P, a G stuck in an unwrapped
/// `std::thread::sleep` while another G waits for the P is named once on stderr, pointing
/// to `gort::blocking`; a lone G computing with nothing queued behind it is not reported.
#[test]
fn a_freeze_is_reported_by_default() {
    if is_child("a_freeze_is_reported_by_default") {
        let stuck = gort::Builder::new()
            .name("stuck".into())
            .spawn(|| std::thread::sleep(std::time::Duration::from_millis(3_000)))
            .unwrap();
        let waiting = gort::go!(|| 1);
        println!("stuck id {}", stuck.id());
        stuck.join().unwrap();
        assert_eq!(waiting.join().unwrap(), 1);
        return;
    }
    let o = run_child("a_freeze_is_reported_by_default", &[("GORT_MAXPROCS", "1")]);
    assert_success(&o);
    let out = stdout(&o);
    let id = out
        .lines()
        .find_map(|l| {
            l.split_once("stuck id ")
                .map(|(_, id)| id.trim().to_string())
        })
        .expect(&out);
    let err = stderr(&o);
    let reports: Vec<&str> = err.lines().filter(|l| l.contains("has held P")).collect();
    assert_eq!(reports.len(), 1, "{err}");
    assert!(
        reports[0].contains(&format!("green thread #{id} ")),
        "{err}"
    );
    assert!(reports[0].contains("gort::blocking"), "{err}");
    // It names the green thread and where it was spawned.
    assert!(
        reports[0].contains("\"stuck\" (spawned at tests/blocking.rs:"),
        "{err}"
    );
}

/// The freeze line also comes when the freeze follows short idle spells: the runtime went
/// idle for a few milliseconds at a time (too briefly for the M ending each spell to wake
/// the monitor thread), the monitor fell asleep in one of them, and the busy period after it
/// must still be watched. (The spells are made with sleeps; what is asserted is only that
/// the report comes, once.)
#[test]
fn a_freeze_after_short_idle_spells_is_reported() {
    if is_child("a_freeze_after_short_idle_spells_is_reported") {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(1_000) {
            gort::go!(|| {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(3) {
                    gort::yield_now();
                }
            })
            .join()
            .unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
        let stuck = gort::Builder::new()
            .name("stuck".into())
            .spawn(|| std::thread::sleep(Duration::from_millis(3_000)))
            .unwrap();
        let waiting = gort::go!(|| 1);
        stuck.join().unwrap();
        assert_eq!(waiting.join().unwrap(), 1);
        return;
    }
    let o = run_child(
        "a_freeze_after_short_idle_spells_is_reported",
        &[("GORT_MAXPROCS", "1")],
    );
    assert_success(&o);
    let err = stderr(&o);
    let reports: Vec<&str> = err.lines().filter(|l| l.contains("has held P")).collect();
    assert_eq!(reports.len(), 1, "{err}");
    assert!(reports[0].contains("\"stuck\""), "{err}");
}

#[test]
fn a_lone_computing_green_thread_is_not_reported() {
    if is_child("a_lone_computing_green_thread_is_not_reported") {
        let h = gort::go!(|| {
            let t = std::time::Instant::now();
            let mut x = 1u64;
            while t.elapsed() < std::time::Duration::from_millis(3_000) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            x
        });
        h.join().unwrap();
        return;
    }
    let o = run_child(
        "a_lone_computing_green_thread_is_not_reported",
        &[("GORT_MAXPROCS", "1")],
    );
    assert_success(&o);
    let err = stderr(&o);
    assert!(!err.contains("has held P"), "{err}");
}
