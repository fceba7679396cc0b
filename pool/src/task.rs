//! A submitted task, stored inline when it is small: a submit allocates nothing for a
//! closure of up to six words (most capture an `Arc` or two and an index), and falls back to
//! a `Box` beyond. The same trick as the runtime's G slot and as smallbox-style crates.

use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};

/// Inline room, in words.
const WORDS: usize = 6;
type Buf = MaybeUninit<[usize; WORDS]>;

/// How to run or drop the closure in a task's buffer.
struct TaskOps {
    /// Moves the closure out and calls it.
    run: unsafe fn(*mut Buf),
    /// Drops the closure in place.
    drop: unsafe fn(*mut Buf),
}

/// One `TaskOps` table per closure type, in static memory.
struct OpsFor<F>(std::marker::PhantomData<F>);

impl<F: FnOnce()> OpsFor<F> {
    const OPS: TaskOps = TaskOps {
        run: run_in::<F>,
        drop: drop_in::<F>,
    };
}

unsafe fn run_in<F: FnOnce()>(buf: *mut Buf) {
    // SAFETY: the caller says an F is in the buffer and will not be used again.
    let f = unsafe { buf.cast::<F>().read() };
    f();
}

unsafe fn drop_in<F>(buf: *mut Buf) {
    // SAFETY: the caller says an F is in the buffer and will not be used again.
    unsafe { buf.cast::<F>().drop_in_place() };
}

/// A `FnOnce() + Send + 'static`, inline or boxed.
pub(crate) struct Task {
    buf: Buf,
    ops: &'static TaskOps,
}

// SAFETY: built only from `F: Send` closures (see `new`).
unsafe impl Send for Task {}

impl Task {
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Task {
        if fits::<F>() {
            Task::inline(f)
        } else {
            Task::inline(Box::new(f))
        }
    }

    fn inline<F: FnOnce() + Send + 'static>(f: F) -> Task {
        assert!(fits::<F>(), "a boxed closure fits");
        let mut buf = Buf::uninit();
        // SAFETY: the buffer is large and aligned enough for F (checked above).
        unsafe { buf.as_mut_ptr().cast::<F>().write(f) };
        Task {
            buf,
            ops: &OpsFor::<F>::OPS,
        }
    }

    /// Runs the closure (a panic propagates; the closure is consumed either way).
    pub(crate) fn run(self) {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: the buffer holds the closure of `ops`; `me` is not dropped, so it is
        // moved out once.
        unsafe { (me.ops.run)(&mut me.buf) }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: not run (`run` skips this drop): the closure is still in the buffer.
        unsafe { (self.ops.drop)(&mut self.buf) }
    }
}

const fn fits<F>() -> bool {
    size_of::<F>() <= size_of::<Buf>() && align_of::<F>() <= align_of::<Buf>()
}

#[cfg(test)]
mod tests {
    use super::Task;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_and_large_closures_run_once_and_drop_once() {
        let ran = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let small = Count(dropped.clone());
        let big = ([7u64; 32], Count(dropped.clone()));
        let (r1, r2) = (ran.clone(), ran.clone());
        Task::new(move || {
            let _s = &small;
            r1.fetch_add(1, Ordering::SeqCst);
        })
        .run();
        Task::new(move || {
            let big = big;
            assert_eq!(big.0.iter().sum::<u64>(), 7 * 32);
            r2.fetch_add(1, Ordering::SeqCst);
        })
        .run();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
        // Dropped unrun: the captures are dropped, the body never runs.
        let small = Count(dropped.clone());
        let big = ([1u8; 200], Count(dropped.clone()));
        drop(Task::new(move || {
            panic!("{}", small.0.load(Ordering::SeqCst))
        }));
        drop(Task::new(move || {
            let big = big;
            panic!("{}", big.0[0])
        }));
        assert_eq!(dropped.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_panicking_task_drops_its_captures_once() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let c = Count(dropped.clone());
        let t = Task::new(move || {
            let _c = c;
            panic!("boom");
        });
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.run())).is_err());
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
