//! Vanilla SGD: `w −= lr·dw`. No state.
use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use super::rule::{Rule, Slot, Staged};
use crate::engine::error::Result;
use crate::engine::scalar::Scalar;
use crate::model::check::positive;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    pub lr: f64,
}

impl Default for Sgd {
    /// CS231n's lr 1e-2.
    fn default() -> Self {
        Sgd { lr: 1e-2 }
    }
}

impl Rule for Sgd {
    fn kind(&self) -> &'static str {
        "sgd"
    }

    fn slots(&self) -> &'static [Slot] {
        &[]
    }

    fn validate(&self) -> Result<()> {
        positive("spec.optimizer.learning_rate", self.lr)
    }

    fn stage<T: Scalar>(
        &self,
        w: &ArrayD<T>,
        g: &ArrayD<T>,
        _: &[&ArrayD<T>],
        _: u64,
    ) -> Staged<T> {
        let lr = T::of(self.lr);
        Staged {
            value: Zip::from(w).and(g).map_collect(|&w, &g| w - lr * g),
            state: Vec::new(),
        }
    }
}
