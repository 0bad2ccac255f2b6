//! The CS231n update rules, with state per parameter. An update is all-or-nothing: new
//! values and new state are computed into fresh buffers and checked finite (gradients,
//! values and state alike), and only then swapped in; any error leaves every parameter
//! and every state slot as it was.
//!
//! - SGD: `w −= lr·dw`
//! - Momentum: `v = μv − lr·dw; w += v`; Nesterov: `w += −μ·v_prev + (1 + μ)·v`
//! - RMSProp: `c = ρc + (1 − ρ)dw²; w −= lr·dw / (√c + ε)`
//! - Adam: `m = β1·m + (1 − β1)dw; v = β2·v + (1 − β2)dw²; t += 1;`
//!   `w −= lr·m̂ / (√v̂ + ε)` with `m̂ = m/(1 − β1ᵗ)`, `v̂ = v/(1 − β2ᵗ)`
use ndarray::{ArrayD, Zip};

use super::net::Param;
use super::spec::OptimizerSpec;
use crate::engine::error::{EngineError, Result};
use crate::engine::scalar::Scalar;

/// An optimizer and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer<T> {
    spec: OptimizerSpec,
    /// Per parameter: velocity (momentum), cache (RMSProp) or first moment m (Adam).
    first: Vec<ArrayD<T>>,
    /// Per parameter: second moment v (Adam only).
    second: Vec<ArrayD<T>>,
    /// Adam's step count t.
    t: u64,
}

/// The state of one parameter after an update, before it is committed.
struct Staged<T> {
    value: ArrayD<T>,
    first: Option<ArrayD<T>>,
    second: Option<ArrayD<T>>,
}

impl<T: Scalar> Optimizer<T> {
    /// Fresh state (all zeros) for these parameters.
    pub fn new(spec: OptimizerSpec, params: &[Param<T>]) -> Self {
        let zeros = || {
            params
                .iter()
                .map(|p| ArrayD::zeros(p.value.raw_dim()))
                .collect()
        };
        let (first, second) = match spec {
            OptimizerSpec::Sgd { .. } => (Vec::new(), Vec::new()),
            OptimizerSpec::Momentum { .. } | OptimizerSpec::RmsProp { .. } => (zeros(), Vec::new()),
            OptimizerSpec::Adam { .. } => (zeros(), zeros()),
        };
        Optimizer {
            spec,
            first,
            second,
            t: 0,
        }
    }

    /// State restored from a checkpoint: `slots[k][i]` is state slot `k` (see
    /// [`slot_names`](Self::slot_names)) of parameter `i`. Every tensor must have its
    /// parameter's shape and be finite, so a restored optimizer behaves exactly like the
    /// one that was saved; second-moment slots must also be ≥ 0.
    pub fn from_state(
        spec: OptimizerSpec,
        params: &[Param<T>],
        mut slots: Vec<Vec<ArrayD<T>>>,
        t: u64,
    ) -> Result<Self> {
        let names = Self::slot_names(&spec);
        if slots.len() != names.len() {
            return Err(EngineError::Parameter {
                field: "optimizer".into(),
                reason: format!(
                    "{} needs {} state slot(s) per parameter, got {}",
                    spec.kind_name(),
                    names.len(),
                    slots.len()
                ),
            });
        }
        for (slot, name) in slots.iter().zip(names) {
            if slot.len() != params.len() {
                return Err(EngineError::Parameter {
                    field: "optimizer".into(),
                    reason: format!(
                        "expected {} {name} tensors, got {}",
                        params.len(),
                        slot.len()
                    ),
                });
            }
            for (p, s) in params.iter().zip(slot) {
                let field = format!("{}.{name}", p.name);
                if s.shape() != p.value.shape() {
                    return Err(EngineError::shape(
                        field,
                        format!("{:?}", p.value.shape()),
                        s.shape(),
                    ));
                }
                super::net::check_finite(&field, s)?;
                if Self::square_slots(&spec).contains(name)
                    && let Some((index, v)) = s.iter().enumerate().find(|(_, v)| **v < T::zero())
                {
                    return Err(EngineError::Parameter {
                        field,
                        reason: format!(
                            "value at flat index {index} is negative ({v}); this slot is a \
                             running average of squared gradients, never below 0"
                        ),
                    });
                }
            }
        }
        let second = if slots.len() > 1 {
            slots.pop().unwrap_or_default()
        } else {
            Vec::new()
        };
        let first = slots.pop().unwrap_or_default();
        Ok(Optimizer {
            spec,
            first,
            second,
            t,
        })
    }

    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// The names of the per-parameter state slots this optimizer keeps, in order; a
    /// checkpoint stores slot `k` of parameter `p` as the tensor `{p}.{name_k}`.
    pub fn slot_names(spec: &OptimizerSpec) -> &'static [&'static str] {
        match spec {
            OptimizerSpec::Sgd { .. } => &[],
            OptimizerSpec::Momentum { .. } => &["momentum"],
            OptimizerSpec::RmsProp { .. } => &["rmsprop_cache"],
            OptimizerSpec::Adam { .. } => &["adam_m", "adam_v"],
        }
    }

    /// The slots (of [`slot_names`](Self::slot_names)) that hold running averages of
    /// squared gradients: RMSProp's cache and Adam's v. They are never negative (√ of
    /// them is taken), so state restored with a negative one is refused.
    fn square_slots(spec: &OptimizerSpec) -> &'static [&'static str] {
        match spec {
            OptimizerSpec::Sgd { .. } | OptimizerSpec::Momentum { .. } => &[],
            OptimizerSpec::RmsProp { .. } => &["rmsprop_cache"],
            OptimizerSpec::Adam { .. } => &["adam_v"],
        }
    }

    /// The state slots (as [`slot_names`](Self::slot_names) orders them, one tensor per
    /// parameter each) and Adam's step count t.
    pub fn state(&self) -> (Vec<&[ArrayD<T>]>, u64) {
        let slots = match Self::slot_names(&self.spec).len() {
            0 => vec![],
            1 => vec![&self.first[..]],
            _ => vec![&self.first[..], &self.second[..]],
        };
        (slots, self.t)
    }

    /// Applies one update with `grads` (one per parameter, same shapes, in order).
    pub fn update(&mut self, params: &mut [Param<T>], grads: &[ArrayD<T>]) -> Result<()> {
        if grads.len() != params.len() {
            return Err(EngineError::Parameter {
                field: "gradients".into(),
                reason: format!("expected {} gradients, got {}", params.len(), grads.len()),
            });
        }
        let t = self
            .t
            .checked_add(1)
            .ok_or_else(|| EngineError::Parameter {
                field: "optimizer_t".into(),
                reason:
                    "the optimizer's step count is at its maximum; no further update is possible"
                        .into(),
            })?;
        let mut staged = Vec::with_capacity(params.len());
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            if g.shape() != p.value.shape() {
                return Err(EngineError::shape(
                    p.name.clone(),
                    format!("{:?}", p.value.shape()),
                    g.shape(),
                ));
            }
            first_non_finite(&p.name, "gradient", g)?;
            let s = self.stage(i, &p.value, g, t);
            first_non_finite(&p.name, "updated value", &s.value)?;
            // A finite g can have an infinite (1 − ρ)·g² (f32, |g| ≳ 1e20): the step is then
            // finite (g/√∞ = 0) but the state would freeze the parameter for good.
            for state in s.first.iter().chain(&s.second) {
                first_non_finite(&p.name, "optimizer state", state)?;
            }
            staged.push(s);
        }
        for (i, (p, s)) in params.iter_mut().zip(staged).enumerate() {
            p.value = s.value;
            if let Some(f) = s.first {
                self.first[i] = f;
            }
            if let Some(v) = s.second {
                self.second[i] = v;
            }
        }
        self.t = t;
        Ok(())
    }

    /// Computes parameter `i`'s new value and state, without committing them.
    fn stage(&self, i: usize, w: &ArrayD<T>, g: &ArrayD<T>, t: u64) -> Staged<T> {
        let one = T::one();
        match self.spec {
            OptimizerSpec::Sgd { lr } => {
                let lr = T::of(lr);
                Staged {
                    value: Zip::from(w).and(g).map_collect(|&w, &g| w - lr * g),
                    first: None,
                    second: None,
                }
            }
            OptimizerSpec::Momentum {
                lr,
                momentum,
                nesterov,
            } => {
                let (lr, mu) = (T::of(lr), T::of(momentum));
                let v_prev = &self.first[i];
                let v = Zip::from(v_prev)
                    .and(g)
                    .map_collect(|&v, &g| mu * v - lr * g);
                let value = if nesterov {
                    Zip::from(w)
                        .and(v_prev)
                        .and(&v)
                        .map_collect(|&w, &vp, &v| w - mu * vp + (one + mu) * v)
                } else {
                    w + &v
                };
                Staged {
                    value,
                    first: Some(v),
                    second: None,
                }
            }
            OptimizerSpec::RmsProp { lr, decay, eps } => {
                let (lr, rho, eps) = (T::of(lr), T::of(decay), T::of(eps));
                let c = Zip::from(&self.first[i])
                    .and(g)
                    .map_collect(|&c, &g| rho * c + (one - rho) * g * g);
                let value = Zip::from(w)
                    .and(g)
                    .and(&c)
                    .map_collect(|&w, &g, &c| w - lr * g / (c.sqrt() + eps));
                Staged {
                    value,
                    first: Some(c),
                    second: None,
                }
            }
            OptimizerSpec::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let (lr_t, b1, b2, eps) = (T::of(lr), T::of(beta1), T::of(beta2), T::of(eps));
                // Bias corrections in f64: β^t underflows gracefully to 0 there.
                let c1 = T::of(1.0 - beta1.powf(t as f64));
                let c2 = T::of(1.0 - beta2.powf(t as f64));
                let m = Zip::from(&self.first[i])
                    .and(g)
                    .map_collect(|&m, &g| b1 * m + (one - b1) * g);
                let v = Zip::from(&self.second[i])
                    .and(g)
                    .map_collect(|&v, &g| b2 * v + (one - b2) * g * g);
                let value = Zip::from(w)
                    .and(&m)
                    .and(&v)
                    .map_collect(|&w, &m, &v| w - lr_t * (m / c1) / ((v / c2).sqrt() + eps));
                Staged {
                    value,
                    first: Some(m),
                    second: Some(v),
                }
            }
        }
    }
}

fn first_non_finite<T: Scalar>(name: &str, what: &'static str, a: &ArrayD<T>) -> Result<()> {
    match crate::engine::scalar::first_non_finite(a) {
        Some(index) => Err(EngineError::NonFiniteUpdate {
            field: name.to_string(),
            what,
            index,
        }),
        None => Ok(()),
    }
}
