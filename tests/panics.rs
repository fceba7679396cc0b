//! Panics inside G's are caught: the payload reaches `join`, the runtime keeps going.
mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

static QUIET: Once = Once::new();
static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics whose message starts with "quiet" instead of printing them.
fn quiet_hook() {
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if msg.starts_with("quiet") {
                HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
            } else {
                default(info);
            }
        }));
    });
}

#[test]
fn payload_reaches_join() {
    quiet_hook();
    let e = gort::go!(|| -> u32 { panic!("quiet: boom") })
        .join()
        .unwrap_err();
    assert_eq!(e.downcast_ref::<&str>(), Some(&"quiet: boom"));
    let n = std::hint::black_box(42);
    let e = gort::go!(move || -> u32 { panic!("quiet: {n}") })
        .join()
        .unwrap_err();
    assert_eq!(
        e.downcast_ref::<String>().map(String::as_str),
        Some("quiet: 42")
    );
    // A custom payload type survives too.
    let e = gort::go!(|| std::panic::panic_any(7u64))
        .join()
        .unwrap_err();
    assert_eq!(e.downcast_ref::<u64>(), Some(&7));
}

#[test]
fn ten_thousand_panics_leave_runtime_usable() {
    quiet_hook();
    let before = HOOK_CALLS.load(Ordering::SeqCst);
    let hs: Vec<_> = (0..10_000)
        .map(|i| gort::go!(move || -> usize { panic!("quiet {i}") }))
        .collect();
    let errs = hs
        .into_iter()
        .map(|h| h.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(errs, 10_000);
    assert!(HOOK_CALLS.load(Ordering::SeqCst) - before >= 10_000);
    let ok: usize = (0..10_000)
        .map(|i| gort::go!(move || i))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(ok, 10_000 * 9_999 / 2);
}

#[test]
fn panic_while_others_block_on_it() {
    quiet_hook();
    // Joiners parked on a G that panics are woken and see the panic.
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let g2 = gate.clone();
    let victim = gort::go!(move || {
        while !g2.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        panic!("quiet victim");
    });
    let joiner = gort::go!(move || victim.join().is_err());
    gate.store(true, Ordering::SeqCst);
    assert!(joiner.join().unwrap());
}

#[test]
fn unjoined_panic_message_reaches_stderr() {
    if is_child("unjoined_panic_message_reaches_stderr") {
        drop(gort::go!(|| panic!("nobody joins me")));
        while gort::num_green_threads() > 0 {
            std::thread::yield_now();
        }
        assert_eq!(gort::go!(|| 1).join().unwrap(), 1);
        return;
    }
    let o = run_child("unjoined_panic_message_reaches_stderr", &[]);
    assert_success(&o);
    assert!(stderr(&o).contains("nobody joins me"), "{}", stderr(&o));
}

/// `gort::current()` names the green thread, on an M and inside `blocking`; a plain thread
/// has none.
#[test]
fn current_names_the_green_thread() {
    assert!(gort::current().is_none());
    assert!(std::thread::spawn(gort::current).join().unwrap().is_none());
    let h = gort::Builder::new()
        .name("named-one".to_string())
        .spawn(|| {
            let me = gort::current().unwrap();
            let inside = gort::blocking(gort::current).unwrap();
            gort::yield_now();
            let later = gort::current().unwrap();
            assert_eq!(me, inside);
            assert_eq!(me, later);
            (me.id(), me.name().map(str::to_owned), me.to_string())
        })
        .unwrap();
    let id = h.id();
    let (got_id, name, shown) = h.join().unwrap();
    assert_eq!((got_id, name.as_deref()), (id, Some("named-one")));
    assert_eq!(shown, format!("#{id} 'named-one'"));
    // Unnamed, and distinct ids.
    let ids: Vec<u64> = (0..100)
        .map(|_| gort::go!(|| gort::current().unwrap()))
        .map(|h| {
            let id = h.id();
            let me = h.join().unwrap();
            assert_eq!((me.id(), me.name()), (id, None));
            id
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len());
}

/// A panic in a green thread prints std's message (which names the OS thread) and then a
/// line naming the green thread.
#[test]
fn panic_message_names_the_green_thread() {
    if is_child("panic_message_names_the_green_thread") {
        let h = gort::Builder::new()
            .name("doomed".to_string())
            .spawn(|| panic!("boom-in-a-green-thread"))
            .unwrap();
        let id = h.id();
        assert!(h.join().is_err());
        println!("id={id}");
        return;
    }
    let o = run_child("panic_message_names_the_green_thread", &[]);
    assert_success(&o);
    let (out, err) = (stdout(&o), stderr(&o));
    let id = out
        .split("id=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    assert!(
        err.contains("panicked at") && err.contains("boom-in-a-green-thread"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "gort: the panic above is in green thread #{id} 'doomed'"
        )),
        "{err}"
    );
}
