//! Keeps freed step buffers in the process. A training step allocates and frees the same
//! few large buffers (W1's gradient alone is 1.2 MB) every time. With glibc's defaults
//! those are handed back to the kernel and faulted in again on the next step, which cost
//! ~15% of a W1 step in `perf` (bench/README.md). Raising the mmap and trim thresholds
//! keeps them in the heap for reuse. Memory is still returned above the trim threshold.
/// Tunes the allocator for repeated large allocations; call once, early in `main`.
/// A no-op where the C library is not glibc.
pub fn keep_step_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
