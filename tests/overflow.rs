//! Stack overflow in a green thread aborts with a clear message; other faults keep their
//! usual meaning. Each case runs as a child process.
mod common;
use common::*;

const SIGSEGV: i32 = 11;
const SIGABRT: i32 = 6;

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let buf = [depth as u8; 1024];
    let buf = std::hint::black_box(buf);
    recurse(depth + 1) + buf[(depth % 1024) as usize] as u64
}

#[test]
fn unnamed_green_thread_overflow_aborts_with_message() {
    if is_child("unnamed_green_thread_overflow_aborts_with_message") {
        let _ = gort::go!(|| recurse(0)).join();
        unreachable!("the recursion never returns");
    }
    let o = run_child("unnamed_green_thread_overflow_aborts_with_message", &[]);
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGABRT), "{err}");
    assert!(err.contains("green thread '#"), "{err}");
    assert!(err.contains("' has overflowed its stack"), "{err}");
}

#[test]
fn named_green_thread_overflow_names_it() {
    if is_child("named_green_thread_overflow_names_it") {
        let h = gort::Builder::new()
            .name("deep-diver".into())
            .spawn(|| recurse(0))
            .unwrap();
        let _ = h.join();
        unreachable!("the recursion never returns");
    }
    let o = run_child("named_green_thread_overflow_names_it", &[]);
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGABRT), "{err}");
    assert!(
        err.contains("green thread 'deep-diver' has overflowed its stack"),
        "{err}"
    );
}

#[test]
fn overflow_inside_blocking_still_names_the_green_thread() {
    if is_child("overflow_inside_blocking_still_names_the_green_thread") {
        let h = gort::Builder::new()
            .name("blocked-diver".into())
            .spawn(|| gort::blocking(|| recurse(0)))
            .unwrap();
        let _ = h.join();
        unreachable!("the recursion never returns");
    }
    let o = run_child("overflow_inside_blocking_still_names_the_green_thread", &[]);
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGABRT), "{err}");
    assert!(
        err.contains("green thread 'blocked-diver' has overflowed its stack"),
        "{err}"
    );
}

#[test]
fn small_custom_stack_overflows_cleanly() {
    if is_child("small_custom_stack_overflows_cleanly") {
        let h = gort::Builder::new()
            .name("tiny".into())
            .stack_size(16 * 1024)
            .spawn(|| recurse(0))
            .unwrap();
        let _ = h.join();
        unreachable!();
    }
    let o = run_child("small_custom_stack_overflows_cleanly", &[]);
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGABRT), "{err}");
    assert!(
        err.contains("green thread 'tiny' has overflowed its stack"),
        "{err}"
    );
}

#[test]
fn overflow_detected_with_mprotect_guards_too() {
    if is_child("overflow_detected_with_mprotect_guards_too") {
        let _ = gort::go!(|| recurse(0)).join();
        unreachable!();
    }
    let o = run_child(
        "overflow_detected_with_mprotect_guards_too",
        &[("GORT_STACK_GUARD", "mprotect")],
    );
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGABRT), "{err}");
    assert!(err.contains("has overflowed its stack"), "{err}");
}

#[test]
fn null_deref_in_green_thread_is_still_sigsegv() {
    if is_child("null_deref_in_green_thread_is_still_sigsegv") {
        let _ = gort::go!(|| {
            // SAFETY: deliberately faulting, to check the handler passes the fault on.
            unsafe { std::ptr::read_volatile(std::ptr::null::<u64>()) }
        })
        .join();
        unreachable!();
    }
    let o = run_child("null_deref_in_green_thread_is_still_sigsegv", &[]);
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGSEGV), "{err}");
    assert!(!err.contains("overflowed"), "{err}");
}

#[test]
fn os_thread_overflow_keeps_std_message() {
    if is_child("os_thread_overflow_keeps_std_message") {
        // Start the runtime so that its handler is installed in front of std's.
        gort::go!(|| ()).join().unwrap();
        let t = std::thread::Builder::new()
            .name("os-deep".into())
            .stack_size(256 * 1024)
            .spawn(|| recurse(0))
            .unwrap();
        let _ = t.join();
        unreachable!();
    }
    let o = run_child("os_thread_overflow_keeps_std_message", &[]);
    let err = stderr(&o);
    assert_eq!(signal(&o), Some(SIGABRT), "{err}");
    // std prints "thread 'os-deep' (<tid>) has overflowed its stack".
    assert!(err.contains("thread 'os-deep'"), "{err}");
    assert!(err.contains("has overflowed its stack"), "{err}");
    assert!(!err.contains("green thread"), "{err}");
}
