//! Matrix products for the matmul gate, on the `gemm` crate's kernels (pure Rust, chosen
//! at run time for the CPU: AVX-512, AVX2 or scalar). ndarray views carry any strides, so
//! transposed operands (`Xᵀ`, `Wᵀ`) are read in place, never copied.
//!
//! Threads per product are a process-wide setting: 1 (the default) suits a server that
//! runs many sessions side by side, one per core; more suits one big session. With more
//! than one, a product is split by rows of its output into independent single-threaded
//! products run on rayon's pool: on W1's `X·W1` (200×3072 by 3072×100) that measured
//! 0.65 ms on 2 threads against 0.96 ms for the crate's own parallel mode (bench/README.md).
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

use super::scalar::Scalar;

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Below this many multiply-adds a product is not worth splitting across threads.
const MIN_SPLIT_WORK: usize = 1 << 20;

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
    if m == 0 || n == 0 || k == 0 {
        return Array2::zeros((m, n));
    }
    let mut out = Array2::<T>::uninit((m, n));
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the kernel writes every element of
    // `out` (read_dst = false) before `assume_init`; it never reads them.
    let view = unsafe { ArrayViewMut2::from_shape_ptr((m, n), out.as_mut_ptr().cast::<T>()) };
    split_rows(a.view(), b, view, threads());
    // SAFETY: every element was written above.
    unsafe { out.assume_init() }
}

/// `out = a·b`, halving the rows of `a` and `out` between threads while there are threads
/// and work to share.
fn split_rows<T: Scalar>(
    a: ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    mut out: ArrayViewMut2<'_, T>,
    threads: usize,
) {
    let (m, k) = a.dim();
    if threads < 2 || m < 2 || m * k * b.ncols() < MIN_SPLIT_WORK {
        return gemm_one(&a, b, &mut out);
    }
    let (a_top, a_bottom) = a.split_at(Axis(0), m / 2);
    let (out_top, out_bottom) = out.split_at(Axis(0), m / 2);
    let half = threads / 2;
    rayon::join(
        || split_rows(a_top, b, out_top, half),
        || split_rows(a_bottom, b, out_bottom, threads - half),
    );
}

/// `out = a·b` on the calling thread; all dimensions non-zero.
fn gemm_one<T: Scalar>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    out: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (o_rs, o_cs) = (out.strides()[0], out.strides()[1]);
    // SAFETY: `out` is an m×n view we hold exclusively (so it aliases neither operand),
    // `a` (m×k) and `b` (k×n) are live views; each pointer with its element strides
    // describes exactly the view's elements, and all dimensions are non-zero. With
    // `read_dst = false` the kernel only writes `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            o_cs,
            o_rs,
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
            gemm::Parallelism::None,
        );
    }
}
