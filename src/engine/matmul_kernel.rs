//! Matrix products for the matmul gate, on the `gemm` crate's kernels (pure Rust, chosen
//! at run time for the CPU: AVX-512, AVX2 or scalar). ndarray views carry any strides, so
//! transposed operands (`Xᵀ`, `Wᵀ`) are read in place, never copied.
//!
//! Threads per product are a process-wide setting: 1 (the default) suits a server that
//! runs many sessions side by side, one per core; more suits one big session.
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, ArrayView2};

use super::scalar::Scalar;

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets how many threads one matrix product may use (at least 1).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Threads one matrix product may use.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// `a·b` into a fresh row-major matrix.
pub fn matmul<T: Scalar>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Array2<T> {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(
        k, k2,
        "matmul: inner dimensions differ (checked by the gate)"
    );
    let mut out = Array2::<T>::zeros((m, n));
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    let parallelism = match threads() {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    // SAFETY: `out` is a fresh, contiguous m×n buffer (row stride n, column stride 1) that
    // aliases neither operand; `a` (m×k) and `b` (k×n) are live views whose pointers and
    // element strides describe exactly their elements, and all dimensions are non-zero.
    // With `read_dst = false` the kernel never reads `out`'s (zero) contents.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
    out
}
