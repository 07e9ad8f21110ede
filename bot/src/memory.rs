//! Memory the process no longer uses goes back to the system: an
//! on-call bot idles for weeks, and its RSS should say what it needs, not
//! the peak of the last storm.

/// Gives the C allocator's freed memory back to the system. SQLite
/// allocates with the C library's `malloc`, not Rust's allocator; after it
/// reads a large table once (the dedup filter's start-up scan), glibc keeps
/// the freed pages, ~8 MB per million alerts, for the life of the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_freed_memory() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only releases memory glibc holds as free; it
    // takes no pointers and may be called from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Elsewhere the allocator decides.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_freed_memory() {}
