//! Helpers shared by the engine tests: seeded data, kink avoidance, and the gate harness.
//!
//! The harness turns a gate's output `Y` into a scalar `L = Σ(Y ⊙ R)` with a fixed random
//! `R` (a mul gate, then a sum gate), backpropagates from `L` with `Graph::backward`, and
//! compares the gradient of every input with central differences of the same `L`.

use backprop::engine::gradcheck::{self, Elements};
use backprop::engine::rng::Rng;
use backprop::engine::{BackwardOptions, Graph, NodeId, Result};
use backprop::model::{DType, HiddenSpec, LossSpec, ModelSpec, Momentum, OptimizerSpec};
use ndarray::{Array2, ArrayD, IxDyn, arr0};

/// `scale · N(0, 1)` in row-major order.
pub fn gaussian(rng: &mut Rng, shape: &[usize], scale: f64) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || scale * rng.normal())
}

pub fn gaussian2(rng: &mut Rng, rows: usize, cols: usize, scale: f64) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || scale * rng.normal())
}

pub fn labels(rng: &mut Rng, n: usize, classes: usize) -> Vec<usize> {
    (0..n).map(|_| rng.below(classes)).collect()
}

/// Random sign times U(0.5, 1.5): coefficients bounded away from 0, so no element of a
/// gradient is tiny by accident (a tiny element has a large relative error from rounding).
pub fn coefficients(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let sign = if rng.below(2) == 0 { -1.0 } else { 1.0 };
        sign * (0.5 + rng.uniform())
    })
}

/// Moves every value within `gap` of a kink to exactly `gap` from it, on its own side.
pub fn push_from_kinks(a: &mut ArrayD<f64>, kinks: &[f64], gap: f64) {
    for v in a.iter_mut() {
        for &k in kinks {
            if (*v - k).abs() < gap {
                *v = if *v >= k { k + gap } else { k - gap };
            }
        }
    }
}

/// The smallest distance of any value to any kink.
pub fn min_distance(a: &ArrayD<f64>, kinks: &[f64]) -> f64 {
    a.iter()
        .flat_map(|v| kinks.iter().map(move |k| (v - k).abs()))
        .fold(f64::INFINITY, f64::min)
}

/// The result of checking one gate: analytic gradients and per-input max relative error.
pub struct GateCheck {
    pub analytic: Vec<ArrayD<f64>>,
    pub errors: Vec<f64>,
}

impl GateCheck {
    pub fn max_error(&self) -> f64 {
        self.errors.iter().copied().fold(0.0, f64::max)
    }
}

/// Checks the gradient of every input of the gate(s) built by `build` on leaves holding
/// `inputs`. `seed` draws the fixed coefficients `R` of `L = Σ(Y ⊙ R)`.
pub fn gate_check(
    inputs: &[ArrayD<f64>],
    seed: u64,
    build: impl Fn(&mut Graph<'static, f64>, &[NodeId]) -> Result<NodeId>,
) -> GateCheck {
    let forward = |values: &[ArrayD<f64>]| -> Result<(Graph<'static, f64>, Vec<NodeId>, NodeId)> {
        let mut g = Graph::new();
        let leaves: Vec<NodeId> = values
            .iter()
            .enumerate()
            .map(|(i, v)| g.leaf(format!("in{i}"), v.clone(), true))
            .collect();
        let y = build(&mut g, &leaves)?;
        Ok((g, leaves, y))
    };
    let y_shape = {
        let (g, _, y) = forward(inputs).expect("gate builds");
        g.value(y).shape().to_vec()
    };
    let r = coefficients(&mut Rng::new(seed), &y_shape);
    // L = sum(mul(Y, R)).
    let scalar = |values: &[ArrayD<f64>]| -> Result<(Graph<'static, f64>, Vec<NodeId>, NodeId)> {
        let (mut g, leaves, y) = forward(values)?;
        let r = g.leaf("r", r.clone(), false);
        let p = g.mul(y, r)?;
        let l = g.sum(p)?;
        Ok((g, leaves, l))
    };

    let (g, leaves, l) = scalar(inputs).expect("gate builds");
    let grads = g
        .backward(vec![(l, arr0(1.0).into_dyn())], BackwardOptions::default())
        .expect("backward");
    let analytic: Vec<ArrayD<f64>> = leaves
        .iter()
        .zip(inputs)
        .map(|(&id, v)| {
            grads
                .get(id)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(v.raw_dim()))
        })
        .collect();

    let mut state: Vec<ArrayD<f64>> = inputs.to_vec();
    let checks = gradcheck::check(
        &mut state,
        &analytic,
        Elements::All,
        |s, k| &mut s[k],
        |s| {
            let (g, _, l) = scalar(s)?;
            Ok(g.value(l).sum())
        },
    )
    .expect("gradcheck");
    for (c, v) in checks.iter().zip(inputs) {
        assert_eq!(c.elements_checked, v.len(), "every element is checked");
    }
    GateCheck {
        analytic,
        errors: checks.iter().map(|c| c.max_relative_error).collect(),
    }
}

/// A small f64 model spec.
pub fn spec(
    input_dim: usize,
    hidden: Vec<HiddenSpec>,
    classes: usize,
    loss: LossSpec,
    l2: f64,
    bias: bool,
    seed: u64,
) -> ModelSpec {
    let mut s = ModelSpec::new(input_dim, hidden, classes);
    s.loss = loss;
    s.l2 = l2;
    s.bias = bias;
    s.seed = seed;
    s.dtype = DType::F64;
    s
}

/// Multiclass SVM with the default margin Δ = 1.
pub fn svm() -> LossSpec {
    LossSpec::Svm { margin: 1.0 }
}

/// Bit patterns of every parameter value, for "bit-identical" comparisons (stricter than
/// `==`, which equates 0.0 and −0.0).
pub fn bits_f64(values: &[&ArrayD<f64>]) -> Vec<Vec<u64>> {
    values
        .iter()
        .map(|a| a.iter().map(|v| v.to_bits()).collect())
        .collect()
}

pub fn bits_f32(values: &[&ArrayD<f32>]) -> Vec<Vec<u32>> {
    values
        .iter()
        .map(|a| a.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// Every update rule with its defaults, Nesterov momentum included (third, after plain
/// momentum, where it has always been: tests seed by position).
pub fn all_optimizers() -> Vec<OptimizerSpec> {
    let mut all = OptimizerSpec::all().to_vec();
    let nesterov = Momentum {
        nesterov: true,
        ..Momentum::default()
    };
    all.insert(2, OptimizerSpec::Momentum(nesterov));
    all
}
