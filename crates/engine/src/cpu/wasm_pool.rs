//! The threaded wasm build's thread pool: helper threads (Web Workers sharing this module's
//! memory) that spin briefly between parallel regions, then sleep on an atomic.
//!
//! Why not rayon here: a decode step is ~150 small parallel regions (one per matrix product);
//! rayon's idle threads fall asleep within microseconds in wasm (`yield_now` does nothing
//! there), and waking a Web Worker from `Atomics.wait` costs ~0.1 ms, so a rayon pool decoded
//! slower on two threads than the single-threaded build. These helpers spin for about a
//! millisecond before they sleep, as llama.cpp's own thread pool does.
//!
//! One parallel region runs at a time: the engine's thread publishes a job (a counter over the
//! region's items), works on it itself, closes it once every item is claimed, then waits for
//! the helpers still inside it. A region started inside a region runs sequentially.

use core::arch::wasm32::{memory_atomic_notify, memory_atomic_wait32};
use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

/// Checks of the job counter before a helper sleeps (a few hundred microseconds to a
/// millisecond: longer than the gaps inside a decode step, short enough to idle quickly).
const SPINS: u32 = 1 << 18;

/// Helpers that have started (set once, by [`set_helpers`]).
static HELPERS: AtomicUsize = AtomicUsize::new(0);
/// Bumped for every job; helpers wait on it.
static EPOCH: AtomicI32 = AtomicI32::new(0);
/// Helpers inside the current job.
static ACTIVE: AtomicU32 = AtomicU32::new(0);
/// The current job takes helpers. Closed once the engine's thread has run out of items, so a
/// helper the system has not scheduled yet is not waited for (on a machine with as many busy
/// threads as cores, waiting for it cost a scheduler time slice per region).
static OPEN: AtomicBool = AtomicBool::new(false);
/// Helpers asleep on [`EPOCH`] (the engine's thread wakes them only when some are).
static SLEEPING: AtomicU32 = AtomicU32::new(0);
/// A region is running (a nested one runs sequentially).
static BUSY: AtomicBool = AtomicBool::new(false);

struct Job(UnsafeCell<Option<&'static (dyn Fn() + Sync)>>);
// SAFETY: written only by the engine's thread while no helper is active and before it opens the
// job, read by helpers only while active in an open job, cleared only once none is active.
unsafe impl Sync for Job {}
static JOB: Job = Job(UnsafeCell::new(None));

/// `n` helper threads are running [`helper`]: parallel regions use them from now on.
pub fn set_helpers(n: usize) {
    HELPERS.store(n, Ordering::Release);
}

/// Threads a region runs on (the engine's thread and the helpers).
pub fn threads() -> usize {
    HELPERS.load(Ordering::Acquire) + 1
}

/// A helper thread's life: run every job published, forever.
pub fn helper() -> ! {
    let mut seen = EPOCH.load(Ordering::Acquire);
    loop {
        let mut spins = 0u32;
        loop {
            let e = EPOCH.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            spins += 1;
            if spins >= SPINS {
                SLEEPING.fetch_add(1, Ordering::SeqCst);
                // SAFETY: EPOCH is a live, aligned i32 in shared memory.
                unsafe { memory_atomic_wait32(EPOCH.as_ptr(), seen, -1) };
                SLEEPING.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
        }
        // Enter, then check the job is still open: either the engine's thread sees this helper
        // active and waits for it, or the helper sees the job closed and stays out.
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        if OPEN.load(Ordering::SeqCst) {
            // SAFETY: see `Job`; the job cannot end while this helper is active.
            if let Some(job) = unsafe { *JOB.0.get() } {
                job();
            }
        }
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Run `f` on every item on the pool's threads; `false` (items untouched) when there is no
/// pool or a region is already running, so the caller runs them itself.
pub fn for_each<T: Send, F: Fn(T) + Sync>(items: &mut Vec<T>, f: &F) -> bool {
    let helpers = HELPERS.load(Ordering::Acquire);
    if helpers == 0 || items.len() < 2 || BUSY.swap(true, Ordering::AcqRel) {
        return false;
    }
    let n = items.len();
    // The items are moved out one by one, each by the thread that claims its index.
    let mut owned = ManuallyDrop::new(std::mem::take(items));
    let base = SendPtr(owned.as_mut_ptr());
    let next = AtomicUsize::new(0);
    let work = move || {
        let base = &base;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            // SAFETY: each index below `n` is claimed exactly once, and the buffer outlives
            // the region (freed below, after every helper has left it).
            f(unsafe { base.0.add(i).read() });
        }
    };
    let job: &(dyn Fn() + Sync) = &work;
    // SAFETY: the reference is cleared below before `work` goes out of scope, once the job is
    // closed and no helper is active in it.
    unsafe {
        *JOB.0.get() =
            Some(std::mem::transmute::<&(dyn Fn() + Sync), &'static (dyn Fn() + Sync)>(job));
    }
    OPEN.store(true, Ordering::SeqCst);
    EPOCH.fetch_add(1, Ordering::SeqCst);
    if SLEEPING.load(Ordering::SeqCst) > 0 {
        // SAFETY: EPOCH is a live, aligned i32 in shared memory.
        unsafe { memory_atomic_notify(EPOCH.as_ptr(), u32::MAX) };
    }
    job();
    // Every item is claimed: close the job and wait for the helpers still in it.
    OPEN.store(false, Ordering::SeqCst);
    while ACTIVE.load(Ordering::SeqCst) != 0 {
        std::hint::spin_loop();
    }
    // SAFETY: no helper is in the job any more.
    unsafe { *JOB.0.get() = None };
    // Every element was moved out: free the buffer only.
    // SAFETY: the buffer came from a Vec of this capacity; its length is now 0.
    unsafe { owned.set_len(0) };
    drop(ManuallyDrop::into_inner(owned));
    BUSY.store(false, Ordering::Release);
    true
}

struct SendPtr<T>(*mut T);
// SAFETY: the items are Send and each is read by exactly one thread.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}
