//! AdamW (Loshchilov & Hutter), as PyTorch's `torch.optim.AdamW`: decoupled weight decay
//! `w ← w − lr·λ·w` (PyTorch writes it `w ← (1 − lr·λ)·w`), then the bias-corrected Adam
//! update on the decayed `w` with the gradient `dw` taken before the decay.
//!
//! The decay applies to every parameter the optimizer updates, biases included, like
//! PyTorch with one parameter group. It is not the spec's L2 regularization
//! `R = λ₂·Σ W²`: that one is part of the loss (reported as `reg_loss`), covers weight
//! matrices only, and reaches the update as the gradient `2λ₂W` inside `dw`, so Adam
//! rescales it by `1/(√v̂ + ε)` with everything else; AdamW's decay is outside the loss
//! and the moments, shrinks each parameter by the same factor `1 − lr·λ` whatever its
//! gradient history, and costs nothing in the reported loss. The two can be combined.
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::rule::{Rule, Slot, Staged};
use crate::engine::error::Result;
use crate::engine::scalar::Scalar;
use crate::model::check::non_negative;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    pub lr: f64,
    /// β1, in [0, 1).
    pub beta1: f64,
    /// β2, in [0, 1).
    pub beta2: f64,
    pub eps: f64,
    /// λ, finite and ≥ 0 (0 is Adam).
    pub weight_decay: f64,
}

impl Default for AdamW {
    /// PyTorch's: lr 1e-3, β1 0.9, β2 0.999, ε 1e-8, λ 0.01.
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Adam's two moments, under names of their own: m (slot 0) and v, a running average
/// of dw² (slot 1).
const SLOTS: &[Slot] = &[Slot::signed("adamw_m"), Slot::squares("adamw_v")];

impl AdamW {
    /// The Adam update that follows the decay.
    fn adam(&self) -> Adam {
        Adam {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
}

impl Rule for AdamW {
    fn kind(&self) -> &'static str {
        "adamw"
    }

    fn slots(&self) -> &'static [Slot] {
        SLOTS
    }

    fn validate(&self) -> Result<()> {
        self.adam().validate()?;
        non_negative("spec.optimizer.weight_decay", self.weight_decay)
    }

    fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        state: &[&ArrayD<T>],
        t: u64,
    ) -> Staged<T> {
        // 1 − lr·λ in f64, rounded once to the dtype, as PyTorch's `param.mul_(1 - lr*wd)`.
        let keep = T::of(1.0 - self.lr * self.weight_decay);
        let decayed = w.mapv(|w| w * keep);
        self.adam().stage(&decayed, g, state, t)
    }
}
