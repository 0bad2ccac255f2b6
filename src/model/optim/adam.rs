//! Adam (Kingma & Ba), bias-corrected: `m = β1·m + (1 − β1)dw; v = β2·v + (1 − β2)dw²;`
//! `w −= lr·m̂ / (√v̂ + ε)` with `m̂ = m/(1 − β1ᵗ)`, `v̂ = v/(1 − β2ᵗ)`, t counting updates
//! from 1.
use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use super::rule::{Rule, Slot, Staged};
use crate::engine::error::Result;
use crate::engine::scalar::Scalar;
use crate::model::check::{positive, unit};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub lr: f64,
    /// β1, in [0, 1).
    pub beta1: f64,
    /// β2, in [0, 1).
    pub beta2: f64,
    pub eps: f64,
}

impl Default for Adam {
    /// The paper's (and CS231n's): lr 1e-3, β1 0.9, β2 0.999, ε 1e-8.
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The first moment m (slot 0) and the second v, a running average of dw² (slot 1).
const SLOTS: &[Slot] = &[Slot::signed("adam_m"), Slot::squares("adam_v")];

impl Rule for Adam {
    fn kind(&self) -> &'static str {
        "adam"
    }

    fn slots(&self) -> &'static [Slot] {
        SLOTS
    }

    fn validate(&self) -> Result<()> {
        positive("spec.optimizer.learning_rate", self.lr)?;
        unit("spec.optimizer.beta1", self.beta1)?;
        unit("spec.optimizer.beta2", self.beta2)?;
        positive("spec.optimizer.epsilon", self.eps)
    }

    fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        state: &[&ArrayD<T>],
        t: u64,
    ) -> Staged<T> {
        let one = T::one();
        let (lr, b1, b2, eps) = (
            T::of(self.lr),
            T::of(self.beta1),
            T::of(self.beta2),
            T::of(self.eps),
        );
        // Bias corrections in f64: β^t underflows gracefully to 0 there.
        let c1 = T::of(1.0 - self.beta1.powf(t as f64));
        let c2 = T::of(1.0 - self.beta2.powf(t as f64));
        let m = Zip::from(state[0])
            .and(g)
            .map_collect(|&m, &g| b1 * m + (one - b1) * g);
        let v = Zip::from(state[1])
            .and(g)
            .map_collect(|&v, &g| b2 * v + (one - b2) * g * g);
        let value = Zip::from(w)
            .and(&m)
            .and(&v)
            .map_collect(|&w, &m, &v| w - lr * (m / c1) / ((v / c2).sqrt() + eps));
        Staged {
            value,
            state: vec![m, v],
        }
    }
}
