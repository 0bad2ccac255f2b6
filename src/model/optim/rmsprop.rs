//! RMSProp: `c = ρc + (1 − ρ)dw²; w −= lr·dw / (√c + ε)`.
use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use super::rule::{Rule, Slot, Staged};
use crate::engine::error::Result;
use crate::engine::scalar::Scalar;
use crate::model::check::{positive, unit};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RmsProp {
    pub lr: f64,
    /// ρ, in [0, 1).
    pub decay: f64,
    pub eps: f64,
}

impl Default for RmsProp {
    /// CS231n's lr 1e-2, ρ 0.99, ε 1e-8.
    fn default() -> Self {
        RmsProp {
            lr: 1e-2,
            decay: 0.99,
            eps: 1e-8,
        }
    }
}

/// The cache c, a running average of dw² (slot 0).
const SLOTS: &[Slot] = &[Slot::squares("rmsprop_cache")];

impl Rule for RmsProp {
    fn kind(&self) -> &'static str {
        "rmsprop"
    }

    fn slots(&self) -> &'static [Slot] {
        SLOTS
    }

    fn validate(&self) -> Result<()> {
        positive("spec.optimizer.learning_rate", self.lr)?;
        unit("spec.optimizer.decay_rate", self.decay)?;
        positive("spec.optimizer.epsilon", self.eps)
    }

    fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        state: &[&ArrayD<T>],
        _: u64,
    ) -> Staged<T> {
        let (lr, rho, eps) = (T::of(self.lr), T::of(self.decay), T::of(self.eps));
        let c = Zip::from(state[0])
            .and(g)
            .map_collect(|&c, &g| rho * c + (T::one() - rho) * g * g);
        let value = Zip::from(w)
            .and(g)
            .and(&c)
            .map_collect(|&w, &g, &c| w - lr * g / (c.sqrt() + eps));
        Staged {
            value,
            state: vec![c],
        }
    }
}
