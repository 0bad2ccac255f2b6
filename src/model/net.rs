//! The network: named parameters, and the graph it records for a batch.
//!
//! Layer i computes `z = h·W_i + b_i` and, for a hidden layer, `h = f(z)`; the output layer
//! has no activation, so `scores = h·W_L + b_L`. A maxout layer computes k affine pieces
//! and takes their elementwise max (a chain of max gates, so the gradient is routed to
//! the winning piece). The loss node adds the data loss and `R = λ·Σ W²`.
use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, arr0};

use super::init::init_params;
use super::param::{Param, check_finite};
use super::spec::{ActivationSpec, LossSpec, ModelSpec};
use crate::engine::backward::BackwardOptions;
use crate::engine::error::{EngineError, Result};
use crate::engine::graph::{Graph, NodeId};
use crate::engine::ops::{
    elu::Elu, gelu::Gelu, leaky_relu::LeakyRelu, relu::Relu, sigmoid::Sigmoid, tanh::Tanh,
};
use crate::engine::scalar::{Scalar, first_non_finite};

/// The two parts of the loss, reported apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Losses {
    /// The mean data loss; `None` when the caller supplied the gradient on the scores.
    pub data: Option<f64>,
    /// `λ·Σ W²`.
    pub reg: f64,
}

impl Losses {
    pub fn total(&self) -> Option<f64> {
        self.data.map(|d| d + self.reg)
    }
}

/// What to differentiate.
#[derive(Debug, Clone, Copy)]
pub enum Target<'t, T> {
    /// The model's loss for these labels (plus R).
    Labels(&'t [usize]),
    /// `Σ(upstream ⊙ scores) + R`, for a caller who computes its own loss on the scores.
    Upstream(ArrayView2<'t, T>),
}

/// The result of a backward pass.
#[derive(Debug, Clone)]
pub struct Gradients<T> {
    pub losses: Losses,
    pub scores: Array2<T>,
    /// One per parameter, in parameter order, same shapes.
    pub params: Vec<ArrayD<T>>,
    /// dL/dX, when asked for.
    pub input: Option<Array2<T>>,
}

/// A batch's recorded graph and its landmarks.
pub struct Pass<'a, T: Scalar> {
    pub graph: Graph<'a, T>,
    pub input: NodeId,
    /// Leaves of the parameters, in parameter order.
    pub params: Vec<NodeId>,
    pub scores: NodeId,
    pub data_loss: Option<NodeId>,
    pub reg_loss: Option<NodeId>,
    /// data + reg, when there are labels.
    pub loss: Option<NodeId>,
}

impl<T: Scalar> Pass<'_, T> {
    pub fn losses(&self) -> Losses {
        let scalar = |id: NodeId| self.graph.value(id).sum().as_f64();
        Losses {
            data: self.data_loss.map(scalar),
            reg: self.reg_loss.map_or(0.0, scalar),
        }
    }

    pub fn scores(&self) -> Array2<T> {
        to_matrix(self.graph.value(self.scores).to_owned())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Net<T> {
    spec: ModelSpec,
    params: Vec<Param<T>>,
}

impl<T: Scalar> Net<T> {
    /// A freshly initialized net. The spec must be valid.
    pub fn new(spec: ModelSpec) -> Result<Self> {
        spec.validate()?;
        let values = init_params::<T>(&spec);
        // A finite scale can still draw weights beyond the dtype (1e39·N(0,1) in f32).
        for (v, p) in values.iter().zip(spec.parameter_shapes()) {
            if let Some(i) = first_non_finite(v) {
                return Err(EngineError::InvalidSpec {
                    field: "spec.init.weight_scale".into(),
                    reason: format!(
                        "initial weights overflow the dtype ({} is not finite at flat index {i}); use a smaller scale",
                        p.name
                    ),
                });
            }
        }
        Self::from_values(spec, values)
    }

    /// A net with the given parameter values (checked against the spec's shapes).
    pub fn from_values(spec: ModelSpec, values: Vec<ArrayD<T>>) -> Result<Self> {
        let shapes = spec.parameter_shapes();
        if shapes.len() != values.len() {
            return Err(EngineError::Parameter {
                field: "parameters".into(),
                reason: format!("expected {} tensors, got {}", shapes.len(), values.len()),
            });
        }
        let params = shapes
            .into_iter()
            .zip(values)
            .map(|(s, v)| {
                if v.shape() != s.shape.as_slice() {
                    return Err(EngineError::shape(
                        s.name,
                        format!("{:?}", s.shape),
                        v.shape(),
                    ));
                }
                Ok(Param {
                    name: s.name,
                    value: v,
                    is_weight: s.is_weight,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Net { spec, params })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn params(&self) -> &[Param<T>] {
        &self.params
    }

    pub(crate) fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum()
    }

    /// The same net in another dtype (e.g. f64 for a gradient check).
    pub fn cast<U: Scalar>(&self) -> Net<U> {
        Net {
            spec: self.spec.clone(),
            params: self
                .params
                .iter()
                .map(|p| Param {
                    name: p.name.clone(),
                    value: p.value.mapv(|v| U::of(v.as_f64())),
                    is_weight: p.is_weight,
                })
                .collect(),
        }
    }

    /// Checks a batch: N×D with N ≥ 1, D = input_dim, every value finite.
    pub fn check_batch(&self, x: &ArrayView2<'_, T>) -> Result<()> {
        if x.nrows() == 0 {
            return Err(EngineError::EmptyBatch { field: "x".into() });
        }
        if x.ncols() != self.spec.input_dim {
            return Err(EngineError::shape(
                "x",
                format!("[N, {}]", self.spec.input_dim),
                x.shape(),
            ));
        }
        check_finite("x", x)
    }

    /// Records the graph of a batch. With `labels`, the loss nodes too. `param_grads` and
    /// `input_grad` say which leaves backward will need gradients for. The regularization
    /// node R is recorded when there are labels or parameter gradients; scores alone
    /// (Forward without labels) skip it, so `losses().reg` is then 0.
    pub fn pass<'a>(
        &'a self,
        x: ArrayView2<'a, T>,
        labels: Option<&[usize]>,
        param_grads: bool,
        input_grad: bool,
    ) -> Result<Pass<'a, T>> {
        self.check_batch(&x)?;
        let mut g = Graph::new();
        let input = g.leaf_view("x", x.into_dyn(), input_grad);
        let mut params = Vec::with_capacity(self.params.len());
        let mut next = self.params.iter();
        let mut affine = |g: &mut Graph<'a, T>, h: NodeId| -> Result<NodeId> {
            let w = next.next().ok_or_else(missing)?;
            let w = g.leaf_view(w.name.clone(), w.value.view(), param_grads);
            params.push(w);
            let mut z = g.matmul(h, w)?;
            if self.spec.bias {
                let b = next.next().ok_or_else(missing)?;
                let b = g.leaf_view(b.name.clone(), b.value.view(), param_grads);
                params.push(b);
                z = g.bias_add(z, b)?;
            }
            Ok(z)
        };
        let mut h = input;
        if let Some(st) = &self.spec.standardize {
            let mean: Vec<T> = st.mean.iter().map(|&m| T::of(m)).collect();
            let inv: Vec<T> = st.std.iter().map(|&s| T::of(1.0 / s)).collect();
            h = g.standardize(h, mean, inv)?;
        }
        for layer in &self.spec.hidden {
            h = match layer.activation {
                ActivationSpec::Maxout { pieces } => {
                    let mut m = affine(&mut g, h)?;
                    for _ in 1..pieces {
                        let z = affine(&mut g, h)?;
                        m = g.max(m, z)?;
                    }
                    m
                }
                act => {
                    let z = affine(&mut g, h)?;
                    activate(&mut g, z, act)?
                }
            };
        }
        let scores = affine(&mut g, h)?;

        // R matters to a loss or a gradient, not to scores alone.
        let reg_loss = if labels.is_some() || param_grads {
            self.reg_node(&mut g, &params)?
        } else {
            None
        };
        let (mut data_loss, mut loss) = (None, None);
        if let Some(labels) = labels {
            let d = match self.spec.loss {
                LossSpec::Svm { margin } => g.svm_loss(scores, labels, T::of(margin))?,
                LossSpec::Softmax => g.softmax_loss(scores, labels)?,
            };
            data_loss = Some(d);
            loss = Some(match reg_loss {
                Some(r) => g.add(d, r)?,
                None => d,
            });
        }
        Ok(Pass {
            graph: g,
            input,
            params,
            scores,
            data_loss,
            reg_loss,
            loss,
        })
    }

    /// `R = Σ_k λ·ΣW_k²` over the weight matrices, or nothing when λ = 0.
    fn reg_node(&self, g: &mut Graph<'_, T>, params: &[NodeId]) -> Result<Option<NodeId>> {
        if self.spec.l2 == 0.0 {
            return Ok(None);
        }
        let mut reg = None;
        for (p, &id) in self.params.iter().zip(params) {
            if p.is_weight {
                let r = g.l2(id, T::of(self.spec.l2))?;
                reg = Some(match reg {
                    Some(acc) => g.add(acc, r)?,
                    None => r,
                });
            }
        }
        Ok(reg)
    }

    /// Scores (N×C) of a batch.
    pub fn scores(&self, x: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(self.pass(x, None, false, false)?.scores())
    }

    /// Scores and losses of a labelled batch.
    pub fn evaluate(&self, x: ArrayView2<'_, T>, labels: &[usize]) -> Result<(Array2<T>, Losses)> {
        let pass = self.pass(x, Some(labels), false, false)?;
        Ok((pass.scores(), pass.losses()))
    }

    /// Forward and backward: the gradient of every parameter (and of X on request).
    pub fn gradients(
        &self,
        x: ArrayView2<'_, T>,
        target: Target<'_, T>,
        input_grad: bool,
    ) -> Result<Gradients<T>> {
        let labels = match target {
            Target::Labels(l) => Some(l),
            Target::Upstream(_) => None,
        };
        let pass = self.pass(x, labels, true, input_grad)?;
        let mut seeds = Vec::with_capacity(2);
        match target {
            Target::Labels(_) => {
                seeds.push((pass.loss.ok_or_else(missing)?, arr0(T::one()).into_dyn()));
            }
            Target::Upstream(up) => {
                let (n, c) = (x.nrows(), self.spec.num_classes);
                if up.shape() != [n, c] {
                    return Err(EngineError::shape(
                        "upstream",
                        format!("[{n}, {c}] (the scores' shape)"),
                        up.shape(),
                    ));
                }
                check_finite("upstream", &up)?;
                seeds.push((pass.scores, up.to_owned().into_dyn()));
                if let Some(r) = pass.reg_loss {
                    seeds.push((r, arr0(T::one()).into_dyn()));
                }
            }
        }
        let mut grads = pass.graph.backward(seeds, BackwardOptions::default())?;
        let params = pass
            .params
            .iter()
            .zip(&self.params)
            .map(|(&id, p)| {
                grads
                    .take(id)
                    .unwrap_or_else(|| ArrayD::zeros(p.value.raw_dim()))
            })
            .collect();
        let input = input_grad.then(|| {
            grads
                .take(pass.input)
                .map_or_else(|| Array2::zeros(x.raw_dim()), to_matrix)
        });
        Ok(Gradients {
            losses: pass.losses(),
            scores: pass.scores(),
            params,
            input,
        })
    }
}

fn activate<T: Scalar>(g: &mut Graph<'_, T>, z: NodeId, act: ActivationSpec) -> Result<NodeId> {
    match act {
        ActivationSpec::Relu => g.activation(z, Relu),
        ActivationSpec::Sigmoid => g.activation(z, Sigmoid),
        ActivationSpec::Tanh => g.activation(z, Tanh),
        ActivationSpec::LeakyRelu { slope } => g.activation(z, LeakyRelu { slope }),
        ActivationSpec::Elu { alpha } => g.activation(z, Elu { alpha }),
        ActivationSpec::Gelu { form } => g.activation(z, Gelu { form }),
        ActivationSpec::Maxout { .. } => {
            unreachable!("maxout is built from affine pieces and max gates")
        }
    }
}

/// The predicted class of each row: the index of its largest score (first on ties).
pub fn predictions<T: Scalar>(scores: &ArrayView2<'_, T>) -> Vec<usize> {
    scores
        .axis_iter(Axis(0))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, T::neg_infinity()), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0
        })
        .collect()
}

/// The fraction of rows whose prediction equals the label.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let hits = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    hits as f64 / labels.len().max(1) as f64
}

fn to_matrix<T: Scalar>(a: ArrayD<T>) -> Array2<T> {
    a.into_dimensionality::<Ix2>()
        .unwrap_or_else(|e| unreachable!("scores and inputs are matrices: {e}"))
}

fn missing() -> EngineError {
    EngineError::Parameter {
        field: "parameters".into(),
        reason: "fewer parameters than the spec needs".into(),
    }
}
