//! The update rules, one file each ([`Sgd`], [`Momentum`], [`RmsProp`], [`Adam`], [`AdamW`]), each
//! its hyper-parameters with their defaults, its state slots and its update behind
//! [`Rule`]; [`OptimizerSpec`] lists them. [`Optimizer`] keeps
//! their state per parameter and makes an update all-or-nothing: new values and new
//! state are computed into fresh buffers and checked finite (gradients, values and state
//! alike), and only then swapped in; any error leaves every parameter and every state
//! slot as it was.
mod adam;
mod adamw;
mod momentum;
mod rmsprop;
mod rule;
mod sgd;
mod spec;

pub use adam::Adam;
pub use adamw::AdamW;
pub use momentum::Momentum;
pub use rmsprop::RmsProp;
pub use rule::{Rule, Slot, Staged};
pub use sgd::Sgd;
pub use spec::OptimizerSpec;

use ndarray::ArrayD;

use super::param::{Param, check_finite};
use crate::engine::error::{EngineError, Result};
use crate::engine::scalar::Scalar;

/// An optimizer and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer<T> {
    spec: OptimizerSpec,
    /// `state[k][i]`: slot `k` (of `spec.slots()`) of parameter `i`, of its shape.
    state: Vec<Vec<ArrayD<T>>>,
    /// The number of updates applied (Adam's t).
    t: u64,
}

impl<T: Scalar> Optimizer<T> {
    /// Fresh state (all zeros) for these parameters.
    pub fn new(spec: OptimizerSpec, params: &[Param<T>]) -> Self {
        let state = spec
            .slots()
            .iter()
            .map(|_| {
                params
                    .iter()
                    .map(|p| ArrayD::zeros(p.value.raw_dim()))
                    .collect()
            })
            .collect();
        Optimizer { spec, state, t: 0 }
    }

    /// State restored from a checkpoint: `slots[k][i]` is state slot `k` (see
    /// [`slot_names`](Self::slot_names)) of parameter `i`. Every tensor must have its
    /// parameter's shape and be finite, so a restored optimizer behaves exactly like the
    /// one that was saved; second-moment slots must also be ≥ 0.
    pub fn from_state(
        spec: OptimizerSpec,
        params: &[Param<T>],
        slots: Vec<Vec<ArrayD<T>>>,
        t: u64,
    ) -> Result<Self> {
        let kinds = spec.slots();
        if slots.len() != kinds.len() {
            return Err(EngineError::Parameter {
                field: "optimizer".into(),
                reason: format!(
                    "{} needs {} state slot(s) per parameter, got {}",
                    spec.kind_name(),
                    kinds.len(),
                    slots.len()
                ),
            });
        }
        for (slot, kind) in slots.iter().zip(kinds) {
            let name = kind.name;
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
                check_finite(&field, s)?;
                if kind.squares
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
        Ok(Optimizer {
            spec,
            state: slots,
            t,
        })
    }

    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// The names of the per-parameter state slots this optimizer keeps, in order; a
    /// checkpoint stores slot `k` of parameter `p` as the tensor `{p}.{name_k}`.
    pub fn slot_names(spec: &OptimizerSpec) -> Vec<&'static str> {
        spec.slots().iter().map(|s| s.name).collect()
    }

    /// The state slots (as [`slot_names`](Self::slot_names) orders them, one tensor per
    /// parameter each) and the update count t.
    pub fn state(&self) -> (Vec<&[ArrayD<T>]>, u64) {
        (self.state.iter().map(Vec::as_slice).collect(), self.t)
    }

    /// Applies one update with `grads` (one per parameter, same shapes, in order).
    pub fn update(&mut self, params: &mut [Param<T>], grads: &[ArrayD<T>]) -> Result<()> {
        self.update_at(params, grads, None)
    }

    /// As [`update`](Self::update), at learning rate `lr` instead of the spec's (for this
    /// update only) when given: one step of a schedule.
    pub fn update_at(
        &mut self,
        params: &mut [Param<T>],
        grads: &[ArrayD<T>],
        lr: Option<f64>,
    ) -> Result<()> {
        let spec = lr.map_or(self.spec, |lr| self.spec.at_learning_rate(lr));
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
            let state: Vec<&ArrayD<T>> = self.state.iter().map(|slot| &slot[i]).collect();
            let s = spec.stage(&p.value, g, &state, t);
            first_non_finite(&p.name, "updated value", &s.value)?;
            // A finite g can have an infinite (1 − ρ)·g² (f32, |g| ≳ 1e20): the step is then
            // finite (g/√∞ = 0) but the state would freeze the parameter for good.
            for state in &s.state {
                first_non_finite(&p.name, "optimizer state", state)?;
            }
            staged.push(s);
        }
        for (i, (p, s)) in params.iter_mut().zip(staged).enumerate() {
            p.value = s.value;
            for (slot, new) in self.state.iter_mut().zip(s.state) {
                slot[i] = new;
            }
        }
        self.t = t;
        Ok(())
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
