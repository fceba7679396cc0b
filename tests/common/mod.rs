//! Helpers for tests that must run in a child process (a crash, an environment variable
//! read once at start-up, a whole-process count).
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Set in the child: the test body runs instead of spawning a child.
pub const CHILD_VAR: &str = "GORT_TEST_CHILD";

/// True inside the child process of `test`.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(test)
}

/// Runs the test binary again, running only `test` (whose body checks `is_child`), with the
/// extra environment `env`. Returns the child's output.
pub fn run_child(test: &str, env: &[(&str, &str)]) -> Output {
    child_command(test, env).output().expect("run child")
}

/// `run_child`, but a child still running after `deadline` is killed and the test fails
/// with what it printed so far (a hang is the failure these tests look for).
pub fn run_child_with_deadline(test: &str, env: &[(&str, &str)], deadline: Duration) -> Output {
    use std::io::Read;
    let mut child = child_command(test, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run child");
    // Drain both pipes on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let mut hung = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            break st;
        }
        if start.elapsed() > deadline {
            hung = true;
            let _ = child.kill();
            break child.wait().expect("wait for child");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    assert!(
        !hung,
        "child hung (killed after {deadline:?})\n--- stdout\n{}\n--- stderr\n{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

pub fn child_command(test: &str, env: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, test)
        .env_remove("GORT_MAXPROCS")
        .env_remove("GORT_STACK_SIZE")
        .env_remove("GORT_STACK_GUARD")
        .env_remove("GORT_MAXTHREADS")
        .env_remove("GORT_DEBUG")
        .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The signal that killed the child, if any.
pub fn signal(o: &Output) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal()
}

/// Asserts the child exited successfully, showing its output if not.
pub fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "child failed: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// CPU time (user + system) of this process so far, in clock ticks.
pub fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `) `.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as u64
}

/// Resident memory of this process, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> usize {
    status_kib("VmRSS:")
}

/// This process's page-table memory in KiB (`VmPTE`).
pub fn pte_kib() -> usize {
    status_kib("VmPTE:")
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sleeps in 1 ms steps until `counter` reaches `n`.
pub fn wait_for(counter: &std::sync::atomic::AtomicUsize, n: usize) {
    while counter.load(std::sync::atomic::Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls `cond` every 10 ms for up to 60 s, giving the runtime no work; its last answer.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Runs `test`'s child body under 1, 2 and 4 P's.
pub fn run_procs(test: &str, extra: &[(&str, &str)]) {
    for procs in ["1", "2", "4"] {
        let mut env = vec![("GORT_MAXPROCS", procs)];
        env.extend_from_slice(extra);
        let o = run_child_with_deadline(test, &env, Duration::from_secs(120));
        assert_success(&o);
        assert!(
            stdout(&o).contains("child done"),
            "GORT_MAXPROCS={procs}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

/// A pipe's two ends (blocking; `PollFd::new` makes them non-blocking).
pub fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array; checked below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh fds, each owned once.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}
