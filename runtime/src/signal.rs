//! Stack-overflow detection: a SIGSEGV/SIGBUS handler that recognises a green thread's
//! guard pages.
//!
//! Each M records, in a thread-local, the guard range and the G it is running just before
//! it resumes that G. When a fault's address lies in that range, the handler prints
//! `green thread '<name or #id>' has overflowed its stack` and aborts, as std does for
//! threads. Any other fault is passed on to the handler that was installed before ours (std
//! installs one for its own thread guards) or, failing one, to the default action, so a
//! null dereference still dies of SIGSEGV.
//!
//! The handler runs on an alternate signal stack: the faulting stack has no room left.
//! std gives its threads one; M's that lack one get their own ([`ensure_altstack`]).

use std::mem::MaybeUninit;
use std::sync::Once;

/// What the overflow handler needs to know about the G running on this thread. The M
/// fills it in before it resumes the G (owner access: the G is not running yet).
#[derive(Clone, Copy)]
pub(crate) struct Running {
    pub(crate) guard_lo: usize,
    pub(crate) guard_hi: usize,
    /// Name of the G (pointer, length), or null.
    pub(crate) name: *const u8,
    pub(crate) name_len: usize,
    pub(crate) id: u64,
}

impl Running {
    pub(crate) const NONE: Running = Running {
        guard_lo: 0,
        guard_hi: 0,
        name: std::ptr::null(),
        name_len: 0,
        id: 0,
    };
}

struct OldActions {
    segv: MaybeUninit<libc::sigaction>,
    bus: MaybeUninit<libc::sigaction>,
}

/// The actions in place before ours; written once inside `INSTALL`, read-only afterwards.
static mut OLD: OldActions = OldActions {
    segv: MaybeUninit::uninit(),
    bus: MaybeUninit::uninit(),
};
static INSTALL: Once = Once::new();

/// Installs the handler for the whole process (idempotent).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `OLD` is written only here, inside `call_once`, before any handler of
        // ours can run (it is not installed yet); afterwards it is only read.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let old = &raw mut OLD;
            libc::sigaction(libc::SIGSEGV, &sa, (*old).segv.as_mut_ptr());
            libc::sigaction(libc::SIGBUS, &sa, (*old).bus.as_mut_ptr());
        }
    });
}

/// Gives the calling thread an alternate signal stack unless it has one. The stack is
/// leaked: M's live as long as the process.
pub(crate) fn ensure_altstack() {
    // SAFETY: sigaltstack with a null new stack only queries; the mapping below is fresh,
    // sized at least SIGSTKSZ, and never unmapped, so it stays valid for the thread's life.
    unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) != 0 {
            return;
        }
        if cur.ss_flags & libc::SS_DISABLE == 0 {
            return;
        }
        let size = (libc::SIGSTKSZ).max(64 * 1024);
        let p = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return;
        }
        let st = libc::stack_t {
            ss_sp: p,
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&st, std::ptr::null_mut());
    }
}

/// Writes all of `buf` to stderr, async-signal-safely.
fn write_stderr(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: write(2) on fd 2 with a valid buffer; async-signal-safe.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV/SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    // `try_with`: during thread teardown the slot may be gone; treat that as "not ours".
    let g = crate::sched::current_g_for_signal();
    let running = if g.is_null() {
        Running::NONE
    } else {
        // SAFETY: a non-null current G is the one this thread is running: it is alive, and
        // its `running` record was written by this thread before the G was resumed.
        unsafe { (*g).running() }
    };
    if running.guard_hi != 0 && addr >= running.guard_lo && addr < running.guard_hi {
        write_stderr(b"\ngreen thread '");
        if running.name.is_null() {
            let mut digits = [0u8; 21];
            let mut i = digits.len();
            let mut id = running.id;
            loop {
                i -= 1;
                digits[i] = b'0' + (id % 10) as u8;
                id /= 10;
                if id == 0 {
                    break;
                }
            }
            write_stderr(b"#");
            write_stderr(&digits[i..]);
        } else {
            // SAFETY: `name` points at the running G's name, which is immutable while the G
            // lives, and the G is alive: it is the one that faulted.
            write_stderr(unsafe { std::slice::from_raw_parts(running.name, running.name_len) });
        }
        write_stderr(
            b"' has overflowed its stack\nfatal runtime error: stack overflow, aborting\n",
        );
        // SAFETY: abort is async-signal-safe.
        unsafe { libc::abort() };
    }
    // Not a guard page of ours: hand the fault to whoever was there before.
    // SAFETY: OLD was fully written before this handler was installed.
    unsafe {
        let old = &raw const OLD;
        let old = if sig == libc::SIGBUS {
            (*old).bus.assume_init_ref()
        } else {
            (*old).segv.assume_init_ref()
        };
        let h = old.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            // Restore the default and return: the faulting instruction runs again and the
            // fault now takes its usual course (a core dump, killed by SIGSEGV).
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        } else if old.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
}
