//! Numeric gradients by central differences, `(f(w + h) − f(w − h)) / 2h` with h = 1e-5
//! in f64, and the relative error `|a − n| / max(1e-8, |a| + |n|)` against an analytic
//! gradient. Used by the tests for every gate and net, and by the GradientCheck RPC.
//!
//! A NaN or an infinity on either side (the analytic gradient, or a loss evaluation
//! behind the numeric one) is an infinite error: it is the worst thing a check can find,
//! and `f64::max` would otherwise drop a NaN and report the element as perfect.
use ndarray::ArrayD;

use super::error::{EngineError, Result};
use super::rng::Rng;

/// The step of the central difference.
pub const H: f64 = 1e-5;

/// `|a − n| / max(1e-8, |a| + |n|)`; infinite if either side is NaN or infinite.
pub fn relative_error(analytic: f64, numeric: f64) -> f64 {
    if !analytic.is_finite() || !numeric.is_finite() {
        return f64::INFINITY;
    }
    let e = (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(1e-8);
    // Two finite values can still overflow |a − n| or |a| + |n| (inf / inf is NaN).
    if e.is_nan() { f64::INFINITY } else { e }
}

/// The outcome for one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCheck {
    /// Never NaN: a non-finite gradient is `f64::INFINITY`.
    pub max_relative_error: f64,
    pub elements_checked: usize,
    /// The row-major index of the element with the largest error (the first such one,
    /// so the first non-finite one if any); `None` when no element was checked.
    pub worst_element: Option<usize>,
}

/// Which elements of each tensor to check.
#[derive(Debug, Clone, Copy)]
pub enum Elements {
    All,
    /// At most this many per tensor, drawn with this seed (with replacement).
    Sample {
        per_tensor: usize,
        seed: u64,
    },
}

/// Checks `analytic[k]` against central differences of `f` in tensor k of `state`, for
/// every k. `tensor(state, k)` gives tensor k to perturb; each element is perturbed in
/// place and restored exactly. `f` evaluates the scalar function at the current state.
pub fn check<S>(
    state: &mut S,
    analytic: &[ArrayD<f64>],
    elements: Elements,
    mut tensor: impl FnMut(&mut S, usize) -> &mut ArrayD<f64>,
    mut f: impl FnMut(&S) -> Result<f64>,
) -> Result<Vec<TensorCheck>> {
    let mut out = Vec::with_capacity(analytic.len());
    for (k, analytic) in analytic.iter().enumerate() {
        let t = tensor(state, k);
        if analytic.shape() != t.shape() {
            return Err(EngineError::shape(
                format!("gradcheck.analytic[{k}]"),
                format!("{:?}", t.shape()),
                analytic.shape(),
            ));
        }
        if !t.is_standard_layout() {
            *t = t.as_standard_layout().into_owned();
        }
        let len = t.len();
        let indices: Vec<usize> = match elements {
            Elements::Sample { per_tensor, seed } if per_tensor < len => {
                let mut rng = Rng::new(seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                (0..per_tensor).map(|_| rng.below(len)).collect()
            }
            _ => (0..len).collect(),
        };
        let a = analytic.as_standard_layout();
        let a = a
            .as_slice()
            .unwrap_or_else(|| unreachable!("standard layout is contiguous"));
        let mut worst = 0.0f64;
        let mut worst_element = None;
        for &i in &indices {
            let original = flat(tensor(state, k))[i];
            flat(tensor(state, k))[i] = original + H;
            let plus = f(state);
            flat(tensor(state, k))[i] = original - H;
            let minus = f(state);
            flat(tensor(state, k))[i] = original;
            let numeric = (plus? - minus?) / (2.0 * H);
            let e = relative_error(a[i], numeric);
            if worst_element.is_none() || e > worst {
                worst = e;
                worst_element = Some(i);
            }
        }
        out.push(TensorCheck {
            max_relative_error: worst,
            elements_checked: indices.len(),
            worst_element,
        });
    }
    Ok(out)
}

fn flat(a: &mut ArrayD<f64>) -> &mut [f64] {
    a.as_slice_mut()
        .unwrap_or_else(|| unreachable!("made standard layout before perturbing"))
}
